// The Sendmail milter protocol, version 6 (libmilter mfdef.h; as Postfix's milter8.c
// speaks it): packets are a 4-octet big-endian length (command byte included), one
// command byte, then data. Pure: encoders for what the MTA sends, a parser for what a
// milter answers. No sockets.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace postern::milter {

constexpr std::uint32_t ProtocolVersion = 6;
constexpr std::size_t MaxPacket = 1024 * 1024;  // largest reply packet accepted (libmilter: 2^20 data)
constexpr std::size_t BodyChunk = 65535;        // MILTER_CHUNK_SIZE

// MTA -> milter commands (SMFIC_*).
namespace cmd {
constexpr char Abort = 'A', Body = 'B', Connect = 'C', Macro = 'D', BodyEob = 'E', Helo = 'H', Header = 'L',
               Mail = 'M', Eoh = 'N', OptNeg = 'O', Quit = 'Q', Rcpt = 'R', Data = 'T', Unknown = 'U';
}

// Actions the MTA allows (SMFIF_*).
namespace act {
constexpr std::uint32_t AddHdrs = 0x01, ChgBody = 0x02, AddRcpt = 0x04, DelRcpt = 0x08, ChgHdrs = 0x10,
                        Quarantine = 0x20, ChgFrom = 0x40, AddRcptPar = 0x80, SetSymList = 0x100;
constexpr std::uint32_t All = 0x1FF;
}  // namespace act

// Protocol steps (SMFIP_*): NO* = do not send this step, NR_* = the milter sends no reply.
namespace proto {
constexpr std::uint32_t NoConnect = 0x1, NoHelo = 0x2, NoMail = 0x4, NoRcpt = 0x8, NoBody = 0x10, NoHdrs = 0x20,
                        NoEoh = 0x40, NrHdr = 0x80, NoUnknown = 0x100, NoData = 0x200, Skip = 0x400,
                        RcptRej = 0x800, NrConn = 0x1000, NrHelo = 0x2000, NrMail = 0x4000, NrRcpt = 0x8000,
                        NrData = 0x10000, NrUnkn = 0x20000, NrEoh = 0x40000, NrBody = 0x80000,
                        HdrLeadSpc = 0x100000;
// What this client can do: every NO*/NR_* step, SKIP, and (protocol 6) HDR_LEADSPC. Not
// RCPT_REJ, MDS_*.
constexpr std::uint32_t Offered = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 |
                                  0x1000 | 0x2000 | 0x4000 | 0x8000 | 0x10000 | 0x20000 | 0x40000 | 0x80000 |
                                  HdrLeadSpc;
// The steps each protocol version has (Postfix's milter8.c masks): a milter speaking an
// older version is neither offered nor sent a step it does not know, since libmilter may
// close the connection on an unknown command (SMFIC_DATA from version 4; SKIP, the NR_*
// replies and HDR_LEADSPC from version 6).
constexpr std::uint32_t V2Steps = NoConnect | NoHelo | NoMail | NoRcpt | NoBody | NoHdrs | NoEoh;
constexpr std::uint32_t V3Steps = V2Steps | NoUnknown;
constexpr std::uint32_t V4Steps = V3Steps | NoData;
constexpr std::uint32_t offeredFor(std::uint32_t version) {
    return version >= 6 ? Offered : Offered & (version >= 4 ? V4Steps : version == 3 ? V3Steps : V2Steps);
}
constexpr bool hasDataStep(std::uint32_t version) { return version >= 4; }
}  // namespace proto

using Macros = std::vector<std::pair<std::string, std::string>>;

// One packet: length, command, data.
std::string packet(char command, std::string_view data = {});
std::string optNeg(std::uint32_t version, std::uint32_t actions, std::uint32_t protocol);
// SMFIC_MACRO for the command `forCommand`: name\0value\0 pairs ("{client_addr}" style
// names are sent as they are).
std::string macros(char forCommand, const Macros& m);
// family: '4', '6', 'L' (unix), 'U' (unknown: no port and address follow).
std::string connect(std::string_view hostname, char family, std::uint16_t port, std::string_view address);
std::string helo(std::string_view name);
// MAIL / RCPT: "<addr>" then ESMTP arguments, each NUL-terminated.
std::string envelope(char command, std::string_view address, const std::vector<std::string>& args = {});
std::string header(std::string_view name, std::string_view value);

// A milter's answer (SMFIR_*).
struct Reply {
    enum class Kind {
        Accept,       // 'a'
        Continue,     // 'c'
        Discard,      // 'd'
        Reject,       // 'r'
        TempFail,     // 't'
        ReplyCode,    // 'y': text = "5xx x.y.z ..." (checked: 4xx/5xx, printable)
        Skip,         // 's'
        Progress,     // 'p'
        ConnFail,     // 'f'
        Shutdown,     // '4'
        AddHeader,    // 'h': name, value
        InsHeader,    // 'i': index, name, value
        ChgHeader,    // 'm': index, name, value ("" = delete)
        AddRcpt,      // '+' / '2': text = address, args
        DelRcpt,      // '-': text = address
        ChgFrom,      // 'e': text = address, args
        ReplBody,     // 'b': text = body chunk
        Quarantine,   // 'q': text = reason
        SetSymList,   // 'l' (ignored)
        OptNeg,       // 'O': version, actions, protocol
    };
    Kind kind = Kind::Continue;
    std::string name;
    std::string text;
    std::string args;
    bool withParams = false;  // '2' (SMFIR_ADDRCPT_PAR), arguments or not
    std::uint32_t index = 0;
    std::uint32_t version = 0, actions = 0, protocol = 0;
    // The action flag a modification needs (0 for verdicts).
    std::uint32_t neededAction() const;
    bool isVerdict() const;
};

// Parses one packet body (command byte + data, the length prefix removed). nullopt +
// error for an unknown command or malformed data. Never throws.
std::optional<Reply> parseReply(std::string_view packet, std::string& error);

// Splits a byte stream into packets. feed() appends; next() returns the next complete
// packet body (without its length) or nullopt; bad() after an oversized or empty packet.
class PacketReader {
public:
    void feed(const char* p, std::size_t n) { buf_.append(p, n); }
    std::optional<std::string> next();
    bool bad() const { return bad_; }

private:
    std::string buf_;
    std::size_t pos_ = 0;
    bool bad_ = false;
};

// A SMFIR_REPLYCODE text the client may be given: "4xx"/"5xx", optional enhanced code of
// the same class, printable text; lines joined by CRLF are each "xyz-..." / "xyz ...".
bool validReplyCode(std::string_view text);

const char* kindName(Reply::Kind k);

}  // namespace postern::milter
