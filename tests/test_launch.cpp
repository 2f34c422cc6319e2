// host/launch.h: where a process stands in the run (environment discovery, with its errors),
// --nproc parsing, wait statuses in words, and the launcher itself on /bin/sh workers.
// tests/test_distributed_launch.sh runs the same code as whole processes (re-executing itself).
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "host/launch.h"
#include "host/stop_request.h"
#include "tests/test_support.h"

namespace {

using namespace distributed;
using test_support::ScopedEnvironment;
using test_support::ScratchDir;

// Every variable the discovery or the launcher reads: each test starts with none of them set.
const std::vector<std::string> kLaunchVariables = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GPT_RENDEZVOUS", "NNODES", "NODE_RANK",
    "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_STEP_TASKS_PER_NODE", "SLURM_NTASKS",
    "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE",
    "PMIX_RANK", "PMI_RANK"};

class LaunchTest : public ::testing::Test {
  protected:
    ScopedEnvironment env_{kLaunchVariables};
};

// Sets each NAME=VALUE of a space-separated list. For the statements of death tests, which run in
// a child process: what they set ends with it.
void set_env(const std::string& assignments) {
    size_t start = 0;
    while (start < assignments.size()) {
        size_t end = assignments.find(' ', start);
        if (end == std::string::npos) end = assignments.size();
        const std::string assignment = assignments.substr(start, end - start);
        const size_t equals = assignment.find('=');
        setenv(assignment.substr(0, equals).c_str(), assignment.substr(equals + 1).c_str(), 1);
        start = end + 1;
    }
}

std::string read_text(const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
}

// ---------------------------------------------------------------------------------------------
// Environment discovery.

TEST_F(LaunchTest, EnvIntReadsIntegersAndRejectsEverythingElseNamingTheVariable) {
    EXPECT_FALSE(env_int("RANK").has_value());
    env_.set("RANK", "12");
    EXPECT_EQ(env_int("RANK"), 12);
    EXPECT_EQ(env_int("RANK", 12, 12), 12);
    for (const char* bad : {"x", "", "12abc", " 12x", "-1", "99999999999", "99999999999999999999999"}) {
        env_.set("RANK", bad);
        EXPECT_EXIT(env_int("RANK"), ::testing::ExitedWithCode(EXIT_FAILURE),
                    "environment variable RANK='.*' is not an integer in \\[0, 2147483647\\]")
            << "value '" << bad << "'";
    }
    env_.set("RANK", "5");
    EXPECT_EXIT(env_int("RANK", 0, 4), ::testing::ExitedWithCode(EXIT_FAILURE), "RANK='5' is not an integer in \\[0, 4\\]");
    EXPECT_EXIT(env_int("RANK", 6), ::testing::ExitedWithCode(EXIT_FAILURE), "RANK='5' is not an integer in \\[6, ");
}

TEST_F(LaunchTest, NoLauncherVariablesMeanASingleProcess) {
    const LaunchInfo info = launch_info_from_environment();
    EXPECT_EQ(info.rank, 0);
    EXPECT_EQ(info.world_size, 1);
    EXPECT_EQ(info.local_rank, 0);
    EXPECT_EQ(info.local_size, 1);
    EXPECT_EQ(info.launcher, Launcher::SingleProcess);
    EXPECT_EQ(info.source, "single process");
    EXPECT_FALSE(started_by_mpi_launcher());
}

TEST_F(LaunchTest, RankWorldSizeLocalRank) {
    env_.set("RANK", "3");
    env_.set("WORLD_SIZE", "8");
    env_.set("LOCAL_RANK", "1");
    env_.set("LOCAL_WORLD_SIZE", "4");
    // RANK/WORLD_SIZE come first even when srun's and mpirun's variables are there too.
    env_.set("SLURM_PROCID", "7");
    env_.set("SLURM_STEP_NUM_TASKS", "16");
    env_.set("OMPI_COMM_WORLD_SIZE", "2");
    const LaunchInfo info = launch_info_from_environment();
    EXPECT_EQ(info.rank, 3);
    EXPECT_EQ(info.world_size, 8);
    EXPECT_EQ(info.local_rank, 1);
    EXPECT_EQ(info.local_size, 4);
    EXPECT_EQ(info.launcher, Launcher::Environment);
    EXPECT_EQ(info.source, "RANK/WORLD_SIZE/LOCAL_RANK");
}

TEST_F(LaunchTest, OneProcessNeedsNoLocalRankAndALocalSizeIsOptional) {
    env_.set("RANK", "0");
    env_.set("WORLD_SIZE", "1");
    const LaunchInfo info = launch_info_from_environment();
    EXPECT_EQ(info.world_size, 1);
    EXPECT_EQ(info.local_rank, 0);
    EXPECT_EQ(info.local_size, 0);  // the launcher did not say
}

TEST_F(LaunchTest, IncompleteOrInconsistentRankVariablesAreErrorsThatSayWhatToSet) {
    const auto fails = ::testing::ExitedWithCode(EXIT_FAILURE);
    EXPECT_EXIT({ set_env("RANK=1"); launch_info_from_environment(); }, fails, "RANK is set but WORLD_SIZE is not");
    EXPECT_EXIT({ set_env("WORLD_SIZE=2"); launch_info_from_environment(); }, fails,
                "WORLD_SIZE is set but RANK is not: set RANK to this process's index in \\[0, 2\\)");
    EXPECT_EXIT({ set_env("RANK=1 WORLD_SIZE=2"); launch_info_from_environment(); }, fails,
                "RANK=1 is set but LOCAL_RANK is not");
    EXPECT_EXIT({ set_env("RANK=2 WORLD_SIZE=2 LOCAL_RANK=0"); launch_info_from_environment(); }, fails,
                "RANK='2' is not an integer in \\[0, 1\\]");
    EXPECT_EXIT({ set_env("RANK=0 WORLD_SIZE=0"); launch_info_from_environment(); }, fails,
                "WORLD_SIZE='0' is not an integer in \\[1, ");
    EXPECT_EXIT({ set_env("RANK=0 WORLD_SIZE=2 LOCAL_RANK=-1"); launch_info_from_environment(); }, fails,
                "LOCAL_RANK='-1'");
    EXPECT_EXIT({ set_env("RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 LOCAL_WORLD_SIZE=0"); launch_info_from_environment(); },
                fails, "LOCAL_WORLD_SIZE='0' is not an integer in \\[1, ");
}

TEST_F(LaunchTest, SrunVariablesWithTheirTaskLists) {
    env_.set("SLURM_PROCID", "5");
    env_.set("SLURM_STEP_NUM_TASKS", "16");
    env_.set("SLURM_LOCALID", "1");
    env_.set("SLURM_STEP_TASKS_PER_NODE", "4(x4)");
    env_.set("OMPI_COMM_WORLD_SIZE", "2");  // srun comes before mpirun's variables
    LaunchInfo info = launch_info_from_environment();
    EXPECT_EQ(info.rank, 5);
    EXPECT_EQ(info.world_size, 16);
    EXPECT_EQ(info.local_rank, 1);
    EXPECT_EQ(info.local_size, 4);
    EXPECT_EQ(info.launcher, Launcher::Environment);
    EXPECT_EQ(info.source, "srun (SLURM_PROCID)");

    env_.set("SLURM_STEP_TASKS_PER_NODE", "8,4");  // nodes with different task counts: no one local size
    EXPECT_EQ(launch_info_from_environment().local_size, 0);

    EXPECT_EQ(slurm_uniform_tasks_per_node("8"), 8);
    EXPECT_EQ(slurm_uniform_tasks_per_node("8(x2)"), 8);
    EXPECT_EQ(slurm_uniform_tasks_per_node("8(x2),4"), 0);
    EXPECT_EQ(slurm_uniform_tasks_per_node("8,8"), 0);
    EXPECT_EQ(slurm_uniform_tasks_per_node("0"), 0);
    EXPECT_EQ(slurm_uniform_tasks_per_node("many"), 0);
    EXPECT_EQ(slurm_uniform_tasks_per_node(nullptr), 0);

    env_.set("SLURM_LOCALID", "x");
    EXPECT_EXIT(launch_info_from_environment(), ::testing::ExitedWithCode(EXIT_FAILURE), "SLURM_LOCALID='x'");
}

TEST_F(LaunchTest, ABatchScriptOutsideAnSrunStepIsASingleProcess) {
    env_.set("SLURM_PROCID", "0");
    env_.set("SLURM_NTASKS", "8");
    const LaunchInfo info = launch_info_from_environment();
    EXPECT_EQ(info.world_size, 1);
    EXPECT_EQ(info.launcher, Launcher::SingleProcess);
}

TEST_F(LaunchTest, MpirunVariablesInABuildWithoutMpi) {
    env_.set("OMPI_COMM_WORLD_RANK", "2");
    env_.set("OMPI_COMM_WORLD_SIZE", "4");
    env_.set("OMPI_COMM_WORLD_LOCAL_RANK", "2");
    env_.set("OMPI_COMM_WORLD_LOCAL_SIZE", "4");
    const LaunchInfo info = launch_info_from_environment();
    EXPECT_EQ(info.rank, 2);
    EXPECT_EQ(info.world_size, 4);
    EXPECT_EQ(info.local_rank, 2);
    EXPECT_EQ(info.local_size, 4);
    EXPECT_EQ(info.source, "mpirun environment (build without MPI)");
    EXPECT_TRUE(started_by_mpi_launcher());
}

TEST_F(LaunchTest, MpiLaunchersAreRecognizedByTheirVariables) {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"}) {
        ScopedEnvironment one({});
        one.set(name, "0");
        EXPECT_TRUE(started_by_mpi_launcher()) << name;
    }
    EXPECT_FALSE(started_by_mpi_launcher());
}

// ---------------------------------------------------------------------------------------------
// --nproc and wait statuses.

TEST_F(LaunchTest, ParseNprocAcceptsOneTo1024AndNamesTheFlagOtherwise) {
    EXPECT_EQ(parse_nproc("1"), 1);
    EXPECT_EQ(parse_nproc("8"), 8);
    EXPECT_EQ(parse_nproc("1024"), 1024);
    for (const char* bad : {"0", "1025", "-2", "abc", "3x", "", "99999999999999999999999"})
        EXPECT_EXIT(parse_nproc(bad), ::testing::ExitedWithCode(EXIT_FAILURE),
                    "--nproc: expected the number of local processes")
            << "value '" << bad << "'";
    EXPECT_EXIT(parse_nproc("abc"), ::testing::ExitedWithCode(EXIT_FAILURE), "got 'abc'");
    EXPECT_EXIT(parse_nproc(nullptr), ::testing::ExitedWithCode(EXIT_FAILURE), "got '\\(nothing\\)'");
}

TEST_F(LaunchTest, WithoutNprocTheProcessIsARank) {
    const char* args[] = {"train_gpt2cu", "-e", "d12", "--steps", "5"};
    EXPECT_FALSE(launch_local_workers_if_requested(5, const_cast<char**>(args)).has_value());
}

TEST_F(LaunchTest, NprocUnderAnotherLauncherIsAnError) {
    const char* args[] = {"train_gpt2cu", "--nproc", "2"};
    const auto request = [&args] { launch_local_workers_if_requested(3, const_cast<char**>(args)); };
    const auto fails = ::testing::ExitedWithCode(EXIT_FAILURE);
    EXPECT_EXIT({ set_env("RANK=0"); request(); }, fails, "cannot be combined");
    EXPECT_EXIT({ set_env("WORLD_SIZE=1"); request(); }, fails, "cannot be combined");
    EXPECT_EXIT({ set_env("PMIX_RANK=0"); request(); }, fails, "cannot be combined");
    EXPECT_EXIT({ set_env("SLURM_STEP_NUM_TASKS=4"); request(); }, fails, "cannot be combined");
    const char* bad[] = {"train_gpt2cu", "--nproc=two"};
    EXPECT_EXIT(launch_local_workers_if_requested(2, const_cast<char**>(bad)), fails, "got 'two'");
    const char* missing[] = {"train_gpt2cu", "--nproc"};
    EXPECT_EXIT(launch_local_workers_if_requested(2, const_cast<char**>(missing)), fails, "got '\\(nothing\\)'");
}

// The wait status of a child that runs `body`, after it exits or stops.
template <typename Body> int status_of_child(Body body) {
    const pid_t pid = fork();
    if (pid == 0) {
        body();
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, WUNTRACED);
    if (WIFSTOPPED(status)) {
        kill(pid, SIGKILL);
        int ignored = 0;
        waitpid(pid, &ignored, 0);
    }
    return status;
}

TEST_F(LaunchTest, ExitStatusesInWordsAndAsShellExitCodes) {
    const int exited3 = status_of_child([] { _exit(3); });
    EXPECT_EQ(describe_exit(exited3), "exited with status 3");
    EXPECT_EQ(exit_code_of(exited3), 3);
    const int exited0 = status_of_child([] {});
    EXPECT_EQ(describe_exit(exited0), "exited with status 0");
    EXPECT_EQ(exit_code_of(exited0), 0);
    const int killed = status_of_child([] { raise(SIGKILL); });
    EXPECT_EQ(describe_exit(killed), std::string("was killed by signal 9 (") + strsignal(SIGKILL) + ")");
    EXPECT_EQ(exit_code_of(killed), 128 + 9);
    const int stopped = status_of_child([] { raise(SIGSTOP); });
    EXPECT_EQ(describe_exit(stopped).rfind("stopped (status ", 0), 0u) << describe_exit(stopped);
    EXPECT_EQ(exit_code_of(stopped), EXIT_FAILURE);
}

// ---------------------------------------------------------------------------------------------
// The launcher, with /bin/sh -c SCRIPT as the workers.

class LauncherTest : public LaunchTest {
  protected:
    ScratchDir scratch_{"test_launch"};
    std::string out_dir_;

    void SetUp() override {
        out_dir_ = scratch_.file("out");
        std::filesystem::create_directory(out_dir_);
        env_.set("TMPDIR", scratch_.path.string());  // where a one-node launcher makes its rendezvous directory
    }

    static int launch_shell(int nproc, const std::string& script) {
        return launch_workers("/bin/sh", nproc, {"sh", "-c", script});
    }
    // A script line that writes what a worker learned from its environment to out/rank_$RANK.
    std::string report_script() const {
        return "printf '%s %s %s %s %s %s\\n' \"$RANK\" \"$WORLD_SIZE\" \"$LOCAL_RANK\" \"$LOCAL_WORLD_SIZE\" "
               "\"$LAUNCH_TEST_MARK\" \"$GPT_RENDEZVOUS\" > " + out_dir_ + "/rank_$RANK";
    }
    std::string report_of(int rank) const { return read_text(out_dir_ + "/rank_" + std::to_string(rank)); }
    // Entries of the scratch directory other than out/ (the rendezvous directory, if left).
    std::vector<std::string> leftovers() const {
        std::vector<std::string> names;
        for (const auto& entry : std::filesystem::directory_iterator(scratch_.path))
            if (entry.path().filename() != "out") names.push_back(entry.path().filename().string());
        return names;
    }
};

TEST_F(LauncherTest, EveryRankLearnsItsPlaceAndTheRendezvousDirectoryIsRemovedAfterwards) {
    env_.set("LAUNCH_TEST_MARK", "inherited");  // the launcher's environment reaches its ranks
    ASSERT_EQ(launch_shell(3, report_script()), 0);
    std::string rendezvous;
    for (int rank = 0; rank < 3; ++rank) {
        const std::string report = report_of(rank);
        const std::string expected = std::to_string(rank) + " 3 " + std::to_string(rank) + " 3 inherited ";
        ASSERT_EQ(report.rfind(expected, 0), 0u) << report;
        const std::string path = report.substr(expected.size(), report.size() - expected.size() - 1);
        if (rank == 0) rendezvous = path;
        EXPECT_EQ(path, rendezvous) << "every rank gets the same rendezvous file";
    }
    EXPECT_EQ(rendezvous.rfind(scratch_.file("gpt2cu-rendezvous-"), 0), 0u) << rendezvous;
    EXPECT_EQ(std::filesystem::path(rendezvous).filename(), "nccl_id");
    EXPECT_TRUE(leftovers().empty()) << leftovers().front();
}

TEST_F(LauncherTest, TheLaunchersOwnPlaceIsReplacedNotDuplicated) {
    // A shell would hide a duplicate variable; env(1) prints the environment exactly as given.
    env_.set("RANK", "9");
    env_.set("WORLD_SIZE", "10");
    env_.set("LOCAL_RANK", "42");
    env_.set("LOCAL_WORLD_SIZE", "43");
    ::testing::internal::CaptureStdout();
    const int result = launch_workers("/usr/bin/env", 1, {"env"});
    const std::string environment = "\n" + ::testing::internal::GetCapturedStdout();
    ASSERT_EQ(result, 0);
    const auto occurrences = [&environment](const std::string& name) {
        size_t count = 0;
        for (size_t at = environment.find("\n" + name + "="); at != std::string::npos;
             at = environment.find("\n" + name + "=", at + 1))
            ++count;
        return count;
    };
    for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GPT_RENDEZVOUS"})
        EXPECT_EQ(occurrences(name), 1u) << name << " in\n" << environment;
    EXPECT_NE(environment.find("\nRANK=0\n"), std::string::npos) << environment;
    EXPECT_NE(environment.find("\nLOCAL_RANK=0\n"), std::string::npos) << environment;
}

TEST_F(LauncherTest, OneLauncherPerNodeStartsItsSliceOfTheRanksOnTheSharedRendezvous) {
    env_.set("NNODES", "2");
    env_.set("NODE_RANK", "1");
    env_.set("GPT_RENDEZVOUS", "/shared/run/nccl_id");
    ASSERT_EQ(launch_shell(2, report_script()), 0);
    EXPECT_EQ(report_of(2), "2 4 0 2  /shared/run/nccl_id\n");
    EXPECT_EQ(report_of(3), "3 4 1 2  /shared/run/nccl_id\n");
    EXPECT_FALSE(std::filesystem::exists(out_dir_ + "/rank_0"));
    EXPECT_TRUE(leftovers().empty()) << leftovers().front();
}

TEST_F(LauncherTest, MultiNodeSettingsAreCheckedBeforeAnythingStarts) {
    const auto launch_two = [] { launch_shell(2, "exit 0"); };
    const auto fails = ::testing::ExitedWithCode(EXIT_FAILURE);
    EXPECT_EXIT({ set_env("NODE_RANK=1"); launch_two(); }, fails, "NODE_RANK is set but NNODES is not");
    EXPECT_EXIT({ set_env("NNODES=2"); launch_two(); }, fails, "NNODES=2: set GPT_RENDEZVOUS to a file path");
    EXPECT_EXIT({ set_env("NNODES=2 NODE_RANK=2 GPT_RENDEZVOUS=/x"); launch_two(); }, fails,
                "NODE_RANK='2' is not an integer in \\[0, 1\\]");
    EXPECT_EXIT({ set_env("TMPDIR=/no/such/directory"); launch_two(); }, fails,
                "cannot create a rendezvous directory /no/such/directory/gpt2cu-rendezvous-");
}

// Runs `nproc` workers of `script`; returns the launcher's result, its stderr and how long it took.
struct LaunchOutcome {
    int result;
    std::string stderr_text;
    double seconds;
};
LaunchOutcome launch_and_capture(int nproc, const std::string& script, const std::string& program = "/bin/sh") {
    const auto start = std::chrono::steady_clock::now();
    ::testing::internal::CaptureStderr();
    const int result = launch_workers(program, nproc, {"sh", "-c", script});
    const std::string text = ::testing::internal::GetCapturedStderr();
    return {result, text, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()};
}

TEST_F(LauncherTest, AFailingRankStopsTheOthersAndItsStatusIsTheLaunchersResult) {
    // Ranks 0 and 2 would sleep for a minute: the launcher must stop them (SIGKILL), not wait.
    const LaunchOutcome run = launch_and_capture(3, "if [ \"$RANK\" = 1 ]; then exit 7; fi; exec sleep 60");
    EXPECT_EQ(run.result, 7);
    EXPECT_LT(run.seconds, 9.0) << "the sleeping ranks were not stopped";
    EXPECT_NE(run.stderr_text.find("[launcher] rank 1 (pid "), std::string::npos) << run.stderr_text;
    EXPECT_NE(run.stderr_text.find(") exited with status 7; stopping the other 2 rank(s)"), std::string::npos)
        << run.stderr_text;
    EXPECT_NE(run.stderr_text.find("[launcher] run failed (exit status 7)"), std::string::npos) << run.stderr_text;
    EXPECT_TRUE(leftovers().empty()) << leftovers().front();
}

TEST_F(LauncherTest, ARankKilledByASignalFailsTheRunWith128PlusTheSignal) {
    const LaunchOutcome run = launch_and_capture(2, "if [ \"$RANK\" = 0 ]; then kill -9 $$; fi; exec sleep 60");
    EXPECT_EQ(run.result, 128 + 9);
    EXPECT_LT(run.seconds, 9.0);
    EXPECT_NE(run.stderr_text.find(") was killed by signal 9"), std::string::npos) << run.stderr_text;
}

TEST_F(LauncherTest, ASignalToTheLauncherStopsEveryRank) {
    // Rank 0 sends SIGTERM to its parent, the launcher (this process), which is waiting for it.
    const LaunchOutcome run = launch_and_capture(2, "if [ \"$RANK\" = 0 ]; then kill -TERM $PPID; fi; exec sleep 60");
    EXPECT_EQ(run.result, 128 + SIGTERM);
    EXPECT_LT(run.seconds, 9.0);
    EXPECT_NE(run.stderr_text.find("[launcher] received signal 15"), std::string::npos) << run.stderr_text;
    EXPECT_NE(run.stderr_text.find("stopping the 2 rank(s)"), std::string::npos) << run.stderr_text;
}

// Ranks that trap the stop signal, as the trainer does: they take their time (a checkpoint),
// then exit with kExitStopped, which the launcher passes on once every rank has.
TEST_F(LauncherTest, RanksStoppingOnASignalAreGivenTimeAndTheirStatusPassedOn) {
    // Each rank says it has set its trap; rank 0 signals the launcher only once both have (a
    // signal before the trap would take its default action and kill the rank).
    // (At most 10 s of waiting, so that a broken launcher fails the test instead of hanging it.)
    const std::string ready = "/tmp/launcher_stop_test_${PPID}_";
    const std::string trap = "trap 'sleep 2; exit " + std::to_string(kExitStopped) + "' USR1; touch " + ready +
                             "$RANK; ";
    const std::string rank0 = "if [ \"$RANK\" = 0 ]; then n=0; while [ ! -e " + ready + "1 ] && [ $n -lt 1000 ]; do "
                              "sleep 0.01; n=$((n + 1)); done; rm -f " + ready + "0 " + ready + "1; kill -USR1 $PPID; fi; ";
    const LaunchOutcome run = launch_and_capture(2, trap + rank0 + "sleep 60 & wait $!");
    EXPECT_EQ(run.result, kExitStopped) << run.stderr_text;
    EXPECT_GT(run.seconds, 1.5);
    EXPECT_LT(run.seconds, 9.0);
    EXPECT_NE(run.stderr_text.find("[launcher] received signal 10"), std::string::npos) << run.stderr_text;
    EXPECT_EQ(run.stderr_text.find("run failed"), std::string::npos) << run.stderr_text;  // it stopped as asked
}

TEST_F(LauncherTest, ARankThatStopsOnItsOwnIsWaitedForNotCountedAsAFailure) {
    // Rank 1 got the signal itself (srun, or kill to one process) and stops; rank 0 follows later.
    const std::string status = std::to_string(kExitStopped);
    const LaunchOutcome run = launch_and_capture(
        2, "if [ \"$RANK\" = 1 ]; then exit " + status + "; fi; sleep 2; exit " + status);
    EXPECT_EQ(run.result, kExitStopped) << run.stderr_text;
    EXPECT_GT(run.seconds, 1.5);
}

TEST_F(LauncherTest, AProgramThatCannotBeExecutedFailsWith127) {
    const LaunchOutcome run = launch_and_capture(2, "exit 0", "/no/such/program");
    EXPECT_EQ(run.result, 127);
    EXPECT_NE(run.stderr_text.find("[launcher] execve(/no/such/program) failed in a child"), std::string::npos)
        << run.stderr_text;
}

TEST_F(LauncherTest, EveryRankSucceedingIsSuccessWithoutAFailureMessage) {
    const LaunchOutcome run = launch_and_capture(4, "exit 0");
    EXPECT_EQ(run.result, 0);
    EXPECT_EQ(run.stderr_text.find("[launcher]"), std::string::npos) << run.stderr_text;
}

}  // namespace
