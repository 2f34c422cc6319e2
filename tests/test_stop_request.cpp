#include "host/stop_request.h"

#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <initializer_list>

#include <gtest/gtest.h>

TEST(StopRequest, AStopSignalIsRecordedNotFatal) {
    stop_request::install();
    stop_request::clear();
    EXPECT_EQ(stop_request::signal_number(), 0);
    std::raise(SIGUSR1);
    EXPECT_EQ(stop_request::signal_number(), SIGUSR1);
    std::raise(SIGUSR1);  // a repeated warning changes nothing
    EXPECT_EQ(stop_request::signal_number(), SIGUSR1);
    stop_request::clear();
    std::raise(SIGTERM);
    EXPECT_EQ(stop_request::signal_number(), SIGTERM);
    stop_request::clear();
    for (int signal_number : {SIGTERM, SIGINT, SIGUSR1}) std::signal(signal_number, SIG_DFL);  // the other tests' defaults
}

TEST(StopRequest, ASecondTermOrIntEndsTheProcess) {
    for (int second : {SIGTERM, SIGINT}) {
        const pid_t child = fork();
        ASSERT_GE(child, 0);
        if (child == 0) {
            stop_request::install();
            stop_request::clear();
            std::raise(SIGINT);
            if (stop_request::signal_number() != SIGINT) _exit(10);
            std::raise(second);  // must not return
            _exit(11);
        }
        int status = 0;
        ASSERT_EQ(waitpid(child, &status, 0), child);
        ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << WEXITSTATUS(status);
        EXPECT_EQ(WTERMSIG(status), second);
    }
}
