#include "host/stop_request.h"

#include <csignal>
#include <initializer_list>

namespace {

volatile sig_atomic_t requested_by = 0;

void on_stop_signal(int signal_number) {
    if (requested_by != 0 && signal_number != SIGUSR1) {
        // The second request: the default action, now (SIGUSR1's default would kill as well, but
        // a repeated Slurm warning is no reason to lose the checkpoint being written).
        std::signal(signal_number, SIG_DFL);
        std::raise(signal_number);
        return;
    }
    if (requested_by == 0) requested_by = signal_number;
}

}  // namespace

namespace stop_request {

void install() {
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    for (int signal_number : {SIGTERM, SIGINT, SIGUSR1}) sigaction(signal_number, &action, nullptr);
}

int signal_number() { return requested_by; }

void clear() { requested_by = 0; }

}  // namespace stop_request
