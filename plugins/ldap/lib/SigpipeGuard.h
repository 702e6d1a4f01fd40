// Keeps SIGPIPE from killing the daemon while libldap writes to a socket the server has
// closed (libldap uses write(), not send(MSG_NOSIGNAL)). Thread-local: blocks SIGPIPE in
// this thread for the guard's lifetime and discards one raised meanwhile, without touching
// the process-wide disposition that belongs to the host.
#pragma once

#include <csignal>
#include <ctime>
#include <pthread.h>

namespace postern::plugins::ldap {

class SigpipeGuard {
public:
    SigpipeGuard() {
        sigemptyset(&pipe_);
        sigaddset(&pipe_, SIGPIPE);
        sigset_t pending;
        sigemptyset(&pending);
        sigpending(&pending);
        wasPending_ = sigismember(&pending, SIGPIPE) == 1;
        blocked_ = pthread_sigmask(SIG_BLOCK, &pipe_, &old_) == 0;
    }
    ~SigpipeGuard() {
        if (!blocked_) {
            return;
        }
        if (!wasPending_) {
            sigset_t pending;
            sigemptyset(&pending);
            sigpending(&pending);
            if (sigismember(&pending, SIGPIPE) == 1) {
                const timespec zero{0, 0};
                sigtimedwait(&pipe_, nullptr, &zero);  // consume the SIGPIPE we caused
            }
        }
        pthread_sigmask(SIG_SETMASK, &old_, nullptr);
    }
    SigpipeGuard(const SigpipeGuard&) = delete;
    SigpipeGuard& operator=(const SigpipeGuard&) = delete;

private:
    sigset_t pipe_;
    sigset_t old_;
    bool wasPending_ = false;
    bool blocked_ = false;
};

}  // namespace postern::plugins::ldap
