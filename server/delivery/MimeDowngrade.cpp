#include "delivery/MimeDowngrade.h"

#include <algorithm>

namespace postern::delivery {

namespace {

bool sameNoCase(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
               return lower(x) == lower(y);
           });
}

bool isWsp(char c) { return c == ' ' || c == '\t'; }

// RFC 5322 2.2: a field name is printable ASCII but ':', then the colon (RFC 822's obsolete
// white space before it accepted, as Postfix does). The length of the name, 0 if none.
std::size_t fieldName(std::string_view line) {
    std::size_t i = 0;
    while (i < line.size() && line[i] > 32 && line[i] < 127 && line[i] != ':') ++i;
    const std::size_t name = i;
    while (i < line.size() && isWsp(line[i])) ++i;
    return name > 0 && i < line.size() && line[i] == ':' ? name : 0;
}

// RFC 2045 5.1: a token is US-ASCII without SPACE, CTLs and tspecials.
bool isTokenChar(char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 32 && u < 127 && std::string_view("()<>@,;:\\\"/[]?=").find(c) == std::string_view::npos;
}

// A structured field value (RFC 2045 5.1, RFC 5322 3.2.2): white space, comments.
class ValueParser {
public:
    explicit ValueParser(std::string_view s) : s_(s) {}

    void skipCfws() {
        for (;;) {
            while (i_ < s_.size() && (isWsp(s_[i_]) || s_[i_] == '\r' || s_[i_] == '\n')) ++i_;
            if (i_ >= s_.size() || s_[i_] != '(') return;
            int depth = 0;
            for (; i_ < s_.size(); ++i_) {
                if (s_[i_] == '\\' && i_ + 1 < s_.size()) ++i_;  // quoted-pair
                else if (s_[i_] == '(') ++depth;
                else if (s_[i_] == ')' && --depth == 0) break;
            }
            if (i_ < s_.size()) ++i_;
        }
    }
    std::string_view token() {
        skipCfws();
        const std::size_t start = i_;
        while (i_ < s_.size() && isTokenChar(s_[i_])) ++i_;
        return s_.substr(start, i_ - start);
    }
    bool take(char c) {
        skipCfws();
        if (i_ < s_.size() && s_[i_] == c) {
            ++i_;
            return true;
        }
        return false;
    }
    // A token or a quoted-string's content (unquoted).
    std::string value() {
        skipCfws();
        if (i_ >= s_.size() || s_[i_] != '"') return std::string(token());
        std::string v;
        for (++i_; i_ < s_.size() && s_[i_] != '"'; ++i_) {
            if (s_[i_] == '\\' && i_ + 1 < s_.size()) ++i_;
            if (s_[i_] != '\r' && s_[i_] != '\n') v += s_[i_];
        }
        if (i_ < s_.size()) ++i_;
        return v;
    }

private:
    std::string_view s_;
    std::size_t i_ = 0;
};

// RFC 2046 5.1.1: a boundary has 1 to 70 characters; a longer one is kept to this length
// (a delimiter line is matched on its start, as Postfix does).
constexpr std::size_t MaxBoundary = 200;

}  // namespace

std::string MimeDowngrade::convert(std::string_view message, bool* converted) {
    MimeDowngrade d;
    std::string out;
    out.reserve(message.size() + message.size() / 8);
    d.feed(message, out);
    d.finish(out);
    if (converted) *converted = d.converted();
    return out;
}

void MimeDowngrade::feed(std::string_view in, std::string& out) {
    while (!in.empty()) {
        const std::size_t lf = in.find('\n');
        const std::size_t room = MaxPiece - pending_.size();
        if (lf != std::string_view::npos && lf < room) {
            pending_.append(in.data(), lf);
            in.remove_prefix(lf + 1);
            const bool cr = !pending_.empty() && pending_.back() == '\r';
            std::string_view text(pending_.data(), pending_.size() - (cr ? 1 : 0));
            line(text, cr ? "\r\n" : "\n", !pieceOpen_, out);
            pending_.clear();
            pieceOpen_ = false;
            continue;
        }
        const std::size_t take = std::min(room, in.size());
        pending_.append(in.data(), take);
        in.remove_prefix(take);
        if (pending_.size() < MaxPiece) return;  // wait for the rest of the line
        // A line longer than a piece goes on in pieces; a CR at the end of one stays for the
        // next, whose LF may make it the line end.
        const bool cr = pending_.back() == '\r';
        line(std::string_view(pending_.data(), pending_.size() - (cr ? 1 : 0)), "", !pieceOpen_, out);
        pending_.erase(0, pending_.size() - (cr ? 1 : 0));
        pieceOpen_ = true;
    }
}

void MimeDowngrade::finish(std::string& out) {
    if (!pending_.empty()) line(pending_, "", !pieceOpen_, out);
    pending_.clear();
    pieceOpen_ = false;
    if (inHeaders_) {
        // The message ends inside a header block: there is no body to convert.
        flushField(out);
        releaseHeld(false, out);
    } else if (encoding_ && !qpLine_.empty()) {
        encode({}, true, out);
        out.resize(out.size() - 2);  // the last line had no line end
    }
}

void MimeDowngrade::line(std::string_view text, std::string_view end, bool lineStart, std::string& out) {
    if (passThrough_) out.append(text).append(end);
    else if (inHeaders_) headerLine(text, end, lineStart, out);
    else bodyLine(text, end, lineStart, out);
}

void MimeDowngrade::headerLine(std::string_view text, std::string_view end, bool lineStart, std::string& out) {
    const bool folded = !lineStart || (!text.empty() && isWsp(text[0]));
    if (folded && fieldOpen_) {
        if (fieldTooLong_) {
            out.append(text).append(end);
        } else if (field_.size() + text.size() + end.size() > MaxFieldLength) {
            // Too long to look into: it goes as it is, and is not a MIME field we act on.
            if (!held_.empty()) {
                releaseHeld(false, out);
                unconvertible_ = true;
            }
            out += field_;
            out.append(text).append(end);
            field_.clear();
            fieldTooLong_ = true;
        } else {
            field_.append(text).append(end);
        }
        return;
    }
    if (!lineStart) {  // the rest of a line that went on as it was (a long delimiter line)
        out.append(text).append(end);
        return;
    }
    flushField(out);
    if (text.empty() && !end.empty()) {
        endHeaders(false, out);
        out.append(end);  // the blank line
        return;
    }
    if (fieldName(text) > 0) {
        field_.assign(text).append(end);
        fieldOpen_ = true;
        return;
    }
    // Not a header field: the header block ends here without its blank line. The line is
    // body text. A converted entity gets the blank line (Postfix adds it to the primary
    // block only), since encoding may make the line look like a field ("Gr=C3=BCe: hi").
    const bool changed = endHeaders(true, out);
    if (changed) out += "\r\n";
    bodyLine(text, end, true, out);
}

void MimeDowngrade::flushField(std::string& out) {
    if (!fieldOpen_) return;
    fieldOpen_ = false;
    if (fieldTooLong_) {
        fieldTooLong_ = false;
        return;
    }
    const std::size_t name = fieldName(field_);
    const std::string_view fieldNameText(field_.data(), name);
    const std::string_view value = std::string_view(field_).substr(field_.find(':') + 1);
    if (primary_ && (sameNoCase(fieldNameText, "DKIM-Signature") || sameNoCase(fieldNameText, "ARC-Message-Signature")))
        signed_ = true;
    if (sameNoCase(fieldNameText, "Content-Transfer-Encoding")) {
        // RFC 2045 6.1; an encoding it does not know leaves the domain as it was (Postfix).
        ValueParser p(value);
        const std::string_view mechanism = p.token();
        if (sameNoCase(mechanism, "8bit") || sameNoCase(mechanism, "binary"))
            eightBit_ = true;
        else if (sameNoCase(mechanism, "7bit") || sameNoCase(mechanism, "quoted-printable") ||
                 sameNoCase(mechanism, "base64"))
            eightBit_ = false;
        // Every such field is replaced by the one label at the end of the block if the entity
        // is converted (two labels, "base64" and "8bit", would leave "base64" on QP text).
        emitField(std::move(field_), true, out);
        field_.clear();
        return;
    } else if (sameNoCase(fieldNameText, "Content-Type")) {
        // RFC 2045 5.1: type "/" subtype *(";" parameter); the last such field counts.
        ValueParser p(value);
        type_ = Kind::Leaf;
        boundary_.clear();
        digest_ = false;
        global_ = false;
        const std::string_view type = p.token();
        std::string_view subtype;
        if (p.take('/')) subtype = p.token();
        sawType_ = true;
        if (sameNoCase(type, "multipart") && !subtype.empty()) {
            type_ = Kind::Multipart;
            digest_ = sameNoCase(subtype, "digest");
            while (p.take(';')) {
                const std::string_view attribute = p.token();
                if (!p.take('=')) break;
                std::string v = p.value();
                if (sameNoCase(attribute, "boundary")) boundary_ = v.substr(0, MaxBoundary);
            }
        } else if (sameNoCase(type, "message") && sameNoCase(subtype, "rfc822")) {
            type_ = Kind::Message;
        } else if (sameNoCase(type, "message") && sameNoCase(subtype, "global")) {
            // RFC 6532 3.5: message/global may be encoded: converted as a leaf.
            type_ = Kind::Message;
            global_ = true;
        }
    }
    emitField(std::move(field_), false, out);
    field_.clear();
}

void MimeDowngrade::emitField(std::string text, bool encodingLabel, std::string& out) {
    if (unconvertible_ || (held_.empty() && !encodingLabel)) {
        out += text;
        return;
    }
    heldSize_ += text.size() + sizeof(HeldField);
    held_.push_back({std::move(text), encodingLabel});
    if (heldSize_ > MaxHeld) {
        releaseHeld(false, out);
        unconvertible_ = true;
    }
}

void MimeDowngrade::releaseHeld(bool dropLabels, std::string& out) {
    for (const auto& f : held_)
        if (!(dropLabels && f.encodingLabel)) out += f.text;
    held_.clear();
    heldSize_ = 0;
}

bool MimeDowngrade::endHeaders(bool garbage, std::string& out) {
    Kind kind = sawType_ ? type_ : (digestDefault_ ? Kind::Message : Kind::Leaf);
    if (kind == Kind::Message && global_ && eightBit_) kind = Kind::Leaf;
    // What cannot be looked into goes on as it is, with its 8bit label: a multipart without a
    // boundary or nested too deep, an enclosed message whose header block ends in a line
    // that is not a field (relabelled 7bit, its 8-bit octets would go under a false label).
    const bool opaque = (kind == Kind::Multipart && (boundary_.empty() || levels_.size() >= MaxDepth)) ||
                        (kind == Kind::Message && garbage);
    if (signed_) {
        // A signed message goes as it is: converted, its signature would no longer verify
        // (and DMARC would fail at the destination).
        releaseHeld(false, out);
        passThrough_ = true;
        inHeaders_ = encoding_ = false;
        return false;
    }
    const bool convert = eightBit_ && !opaque && !unconvertible_;
    releaseHeld(convert, out);
    if (convert) {
        // RFC 2045 6.4: a multipart or message/rfc822 is never encoded, only labelled.
        out += kind == Kind::Leaf ? "Content-Transfer-Encoding: quoted-printable\r\n"
                                  : "Content-Transfer-Encoding: 7bit\r\n";
        converted_ = true;
    }
    unconvertible_ = false;
    inHeaders_ = false;
    encoding_ = false;
    if (opaque) return false;
    if (kind == Kind::Multipart) {
        levels_.push_back({boundary_, digest_});
    } else if (kind == Kind::Message && !garbage) {
        startHeaders(false);  // the enclosed message's header block follows
    } else if (kind == Kind::Leaf) {
        encoding_ = convert;
    }
    return convert;
}

void MimeDowngrade::startHeaders(bool digestPart) {
    inHeaders_ = true;
    primary_ = false;
    fieldOpen_ = false;
    fieldTooLong_ = false;
    field_.clear();
    held_.clear();
    heldSize_ = 0;
    unconvertible_ = false;
    type_ = Kind::Leaf;
    sawType_ = false;
    global_ = false;
    eightBit_ = false;
    digestDefault_ = digestPart;
    boundary_.clear();
    digest_ = false;
}

void MimeDowngrade::bodyLine(std::string_view text, std::string_view end, bool lineStart, std::string& out) {
    // RFC 2046 5.1.1: "--" boundary starts a part, "--" boundary "--" closes the multipart;
    // an outer boundary also ends the inner multiparts left open.
    if (lineStart && !levels_.empty() && text.size() > 2 && text[0] == '-' && text[1] == '-') {
        for (std::size_t i = levels_.size(); i-- > 0;) {
            const std::string& b = levels_[i].boundary;
            if (text.compare(2, b.size(), b) != 0) continue;
            levels_.resize(i + 1);
            const bool closing = text.size() >= 4 + b.size() && text.compare(2 + b.size(), 2, "--") == 0;
            if (closing) {
                levels_.pop_back();
                inHeaders_ = false;
                encoding_ = false;  // the epilogue goes as it is
            } else {
                startHeaders(levels_[i].digest);
            }
            out.append(text).append(end);
            return;
        }
    }
    if (encoding_) encode(text, !end.empty(), out);
    else out.append(text).append(end);
}

void MimeDowngrade::encode(std::string_view text, bool hardEnd, std::string& out) {
    static constexpr char Hex[] = "0123456789ABCDEF";
    // RFC 2045 6.7: rules 1-2 (8-bit octets, "=" and controls but TAB as =XX), rule 5 (at
    // most 76 characters: a soft break "=" once a line passes 72).
    for (char ch : text) {
        bool lineStart = false;
        if (qpLine_.size() > 72) {
            out += qpLine_;
            out += "=\r\n";
            qpLine_.clear();
            lineStart = true;
        }
        const auto c = static_cast<unsigned char>(ch);
        // RFC 2046 5.1.1: a line that a soft break starts must not begin a boundary
        // delimiter ("--b1" at column 74 would add a part the sender never sent).
        if ((c < 32 && c != '\t') || c == '=' || c > 126 || (lineStart && c == '-')) {
            qpLine_ += '=';
            qpLine_ += Hex[c >> 4];
            qpLine_ += Hex[c & 0xf];
        } else {
            qpLine_ += ch;
        }
    }
    if (!hardEnd) return;
    // Rule 3: white space at the end of an encoded line is encoded (it would be dropped).
    if (!qpLine_.empty() && isWsp(qpLine_.back())) {
        const char c = qpLine_.back();
        qpLine_.back() = '=';
        qpLine_ += c == ' ' ? "20" : "09";
    }
    out += qpLine_;
    out += "\r\n";
    qpLine_.clear();
}

}  // namespace postern::delivery
