// Reads a password for posternctl: from the terminal without echo (asked twice), or from the
// first line of stdin when it is not a terminal.
#include "PasswordPrompt.h"

#include <openssl/crypto.h>

#include <csignal>
#include <istream>
#include <ostream>

#include <termios.h>
#include <unistd.h>

namespace postern::ctl {
namespace {

struct termios savedTermios;
volatile std::sig_atomic_t echoOff = 0;

// Ctrl-C at the prompt must not leave the user's terminal without echo.
extern "C" void restoreAndReraise(int sig) {
    if (echoOff) {
        ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &savedTermios);
    }
    std::signal(sig, SIG_DFL);
    std::raise(sig);
}

// Turns echo off for its lifetime (RAII), restoring the terminal on every path.
class EchoOff {
public:
    EchoOff() {
        if (::tcgetattr(STDIN_FILENO, &savedTermios) != 0) {
            return;
        }
        struct sigaction sa {};
        sa.sa_handler = restoreAndReraise;
        sigemptyset(&sa.sa_mask);
        for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP}) {
            ::sigaction(sig, &sa, nullptr);
        }
        struct termios t = savedTermios;
        t.c_lflag &= static_cast<tcflag_t>(~ECHO);
        t.c_lflag |= ECHONL;
        ok_ = ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0;
        echoOff = ok_ ? 1 : 0;
    }
    ~EchoOff() {
        if (ok_) {
            ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &savedTermios);
        }
        echoOff = 0;
        for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP}) {
            std::signal(sig, SIG_DFL);
        }
    }
    EchoOff(const EchoOff&) = delete;
    EchoOff& operator=(const EchoOff&) = delete;
    bool ok() const { return ok_; }

private:
    bool ok_ = false;
};

void wipe(std::string& s) {
    if (!s.empty()) {
        OPENSSL_cleanse(s.data(), s.size());
    }
    s.clear();
}

bool readLine(std::istream& in, std::string& line) {
    if (!std::getline(in, line)) {
        return false;
    }
    if (!line.empty() && line.back() == '\r') {
        line.pop_back();
    }
    return true;
}

}  // namespace

std::optional<std::string> readNewPassword(std::istream& in, std::ostream& err) {
    std::string first;
    if (!::isatty(STDIN_FILENO)) {
        if (!readLine(in, first)) {
            err << "posternctl: no password on stdin\n";
            return std::nullopt;
        }
    } else {
        std::string second;
        {
            EchoOff guard;
            if (!guard.ok()) {
                err << "posternctl: cannot turn off terminal echo\n";
                return std::nullopt;
            }
            err << "New password: " << std::flush;
            bool gotFirst = readLine(in, first);
            err << "Retype new password: " << std::flush;
            bool gotSecond = gotFirst && readLine(in, second);
            if (!gotSecond) {
                wipe(first);
                err << "\nposternctl: no password entered\n";
                return std::nullopt;
            }
        }
        bool same = first == second;
        wipe(second);
        if (!same) {
            wipe(first);
            err << "posternctl: the passwords do not match\n";
            return std::nullopt;
        }
    }
    if (first.empty()) {
        err << "posternctl: refusing an empty password\n";
        return std::nullopt;
    }
    return first;
}

std::optional<std::string> readPassword(std::istream& in, std::ostream& err) {
    std::string pw;
    if (!::isatty(STDIN_FILENO)) {
        if (!readLine(in, pw)) {
            err << "posternctl: no password on stdin\n";
            return std::nullopt;
        }
        return pw;
    }
    EchoOff guard;
    if (!guard.ok()) {
        err << "posternctl: cannot turn off terminal echo\n";
        return std::nullopt;
    }
    err << "Password: " << std::flush;
    if (!readLine(in, pw)) {
        err << "\nposternctl: no password entered\n";
        return std::nullopt;
    }
    return pw;
}

}  // namespace postern::ctl
