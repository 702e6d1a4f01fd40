// 8-bit MIME content made 7-bit for a next hop that does not offer 8BITMIME (RFC 6152 3: a
// client must not send 8-bit data to such a server; it converts or returns the message).
// As Postfix's smtp client does: a part declared "8bit" or "binary" (RFC 2045 6) becomes
// quoted-printable (RFC 2045 6.7), a multipart or message/rfc822 declared so becomes "7bit"
// and its parts are converted in turn (RFC 2046 5).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace postern::delivery {

// What is converted, and what is not:
// - Leaf parts whose Content-Transfer-Encoding says 8bit or binary: the body is encoded as
//   quoted-printable (CRLF line ends stay hard line breaks, lines of at most 76 octets), the
//   header field is replaced by "Content-Transfer-Encoding: quoted-printable" at the end of
//   the part's header block. message/global (RFC 6532) is such a leaf.
// - multipart/* and message/rfc822 declared 8bit or binary: "7bit", and their parts or the
//   enclosed message are looked at in turn (multipart/digest's parts default to
//   message/rfc822, RFC 2046 5.1.5).
// - Everything else goes as it is, octet for octet: header fields (8-bit header text has no
//   charset to encode it with; RFC 6532 mail needs SMTPUTF8), parts declared 7bit or with no
//   Content-Transfer-Encoding at all (8-bit octets there are undeclared: nothing says which
//   charset), quoted-printable and base64 parts. A message with nothing to convert comes out
//   unchanged.
// - A message whose own header has a DKIM-Signature (RFC 6376) or ARC-Message-Signature
//   (RFC 8617) goes as it is: converted, the signature would fail, and with it DMARC at the
//   destination; servers without 8BITMIME (qmail, say) take 8-bit text in practice. (Postfix
//   converts; its users who sign turn disable_mime_output_conversion on.)
// - What cannot be followed goes as it is, 8-bit octets and 8bit label included (as before
//   this conversion existed; Postfix bounces the too-deep case): a multipart without a
//   boundary or nested deeper than MaxDepth, an enclosed message whose header block ends in a
//   line that is not a field, a header block whose fields from its Content-Transfer-Encoding
//   on exceed MaxHeld octets. Undeclared 8-bit text inside a multipart or enclosed message
//   that was relabelled 7bit stays too (as in Postfix).
// The input is a stored message (CRLF line ends; the caller does not convert a message that
// needs BINARYMIME). Memory is bounded whatever the input: a header field is looked at up
// to MaxFieldLength octets (longer ones go as they are), the fields of a header block from
// a Content-Transfer-Encoding field on up to MaxHeld octets, lines in pieces of MaxPiece, at
// most MaxDepth nested multiparts.
//
// Feed the message in pieces as they come (any split gives the same output), then call
// finish(). One per message; not thread-safe. Never throws but std::bad_alloc.
class MimeDowngrade {
public:
    static constexpr std::size_t MaxFieldLength = 64 * 1024;
    static constexpr std::size_t MaxPiece = 8 * 1024;
    static constexpr std::size_t MaxDepth = 64;
    static constexpr std::size_t MaxHeld = 256 * 1024;

    // Appends the converted form of `in` to `out` (what can be decided so far).
    void feed(std::string_view in, std::string& out);
    // The message ends here: appends the rest.
    void finish(std::string& out);

    // True once a part was converted (the output differs from the input).
    bool converted() const { return converted_; }

    // The whole message at once.
    static std::string convert(std::string_view message, bool* converted = nullptr);

private:
    enum class Kind { Leaf, Multipart, Message };
    struct Level {  // an open multipart: its boundary, and the default type of its parts
        std::string boundary;
        bool digest = false;
    };

    // One line (text without its line end `end`), or a piece of a long one (`end` empty;
    // lineStart false for the pieces after the first).
    void line(std::string_view text, std::string_view end, bool lineStart, std::string& out);
    void headerLine(std::string_view text, std::string_view end, bool lineStart, std::string& out);
    void bodyLine(std::string_view text, std::string_view end, bool lineStart, std::string& out);
    // The gathered header field goes out (or is withheld); what it says is noted.
    void flushField(std::string& out);
    void emitField(std::string text, bool encodingLabel, std::string& out);
    void releaseHeld(bool dropLabels, std::string& out);
    // The header block ends (`garbage`: at a line that is not a header field); true if the
    // entity is converted.
    bool endHeaders(bool garbage, std::string& out);
    // A header block starts: a part's (a digest's: default message/rfc822) or an enclosed
    // message's.
    void startHeaders(bool digestPart);
    void encode(std::string_view text, bool hardEnd, std::string& out);

    std::string pending_;     // the current line so far (at most MaxPiece)
    bool pieceOpen_ = false;  // pending_ continues a line already partly handled

    bool inHeaders_ = true;   // in a header block (primary, a part's, an enclosed message's)
    bool primary_ = true;     // that block is the message's own
    std::string field_;       // the header field being gathered: its lines as they came
    bool fieldOpen_ = false;  // field_ holds a field (more lines may fold into it)
    bool fieldTooLong_ = false;  // its start went out as it was (over MaxFieldLength)
    // From a Content-Transfer-Encoding field on, the block's fields are held until the block
    // ends (at most MaxHeld octets, counting each field's bookkeeping): converted, they go
    // without such fields and with the new one at the end; else as they came.
    struct HeldField {
        std::string text;
        bool encodingLabel = false;  // a Content-Transfer-Encoding field
    };
    std::vector<HeldField> held_;
    std::size_t heldSize_ = 0;
    bool unconvertible_ = false;  // this block was too large to hold: its entity goes as it is
    Kind type_ = Kind::Leaf;     // what its Content-Type says
    bool global_ = false;        // message/global
    bool eightBit_ = false;      // declared 8bit or binary
    bool digestDefault_ = false; // no Content-Type: message/rfc822 (a digest's part)
    bool sawType_ = false;
    std::string boundary_;       // a multipart's boundary parameter
    bool digest_ = false;        // multipart/digest

    bool encoding_ = false;   // the body being read is converted to quoted-printable
    std::string qpLine_;      // its current output line (soft breaks keep it under 76)
    std::vector<Level> levels_;
    bool converted_ = false;
    bool signed_ = false;       // the message's own header has a DKIM or ARC signature
    bool passThrough_ = false;  // ... so the rest goes as it is
};

}  // namespace postern::delivery
