// data_prep's downloads (data_prep/src/download.h) against tests/http_fixture_server.py on
// 127.0.0.1: whole files, resumed and retried transfers, checksum mismatches, HTTP errors, and the
// Pile recipe downloading its files or saying what to do offline.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include "data_prep/src/download.h"
#include "data_prep/src/recipes.h"
#include "data_prep/src/sha256.h"
#include "tests/data_prep_test_support.h"

namespace fs = std::filesystem;
using namespace data_prep;
using namespace data_prep_test;

namespace {

// The fixture server as a child process on a free port; killed when this object goes away.
class FixtureServer {
  public:
    FixtureServer(const std::string& root, const std::string& log, std::vector<std::string> extra = {}) {
        std::vector<std::string> args = {"python3", "tests/http_fixture_server.py", "--root", root, "--log", log};
        args.insert(args.end(), extra.begin(), extra.end());
        int pipe_fds[2];
        if (pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
        pid_ = fork();
        if (pid_ == 0) {
            dup2(pipe_fds[1], STDOUT_FILENO);
            close(pipe_fds[0]);
            std::vector<char*> argv;
            for (std::string& arg : args) argv.push_back(arg.data());
            argv.push_back(nullptr);
            execvp("python3", argv.data());
            _exit(127);
        }
        close(pipe_fds[1]);
        std::string line;
        char c;
        while (read(pipe_fds[0], &c, 1) == 1 && c != '\n') line += c;
        close(pipe_fds[0]);
        if (line.rfind("PORT ", 0) != 0) throw std::runtime_error("tests/http_fixture_server.py did not start: '" + line + "'");
        port_ = std::stoi(line.substr(5));
    }
    ~FixtureServer() {
        kill(pid_, SIGTERM);
        waitpid(pid_, nullptr, 0);
    }
    std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + "/" + path; }

  private:
    pid_t pid_ = -1;
    int port_ = 0;
};

struct DownloadFixture {
    DataPrepTempDir dir;
    std::string root, blob, digest, log;
    DownloadFixture() : root(dir.file("served")), log(dir.file("requests.log")) {
        fs::create_directory(root);
        blob = pseudo_random_text(300000, 11);
        write_file(root + "/blob.bin", blob);
        Sha256 hash;
        hash.update(blob.data(), blob.size());
        digest = hash.hex_digest();
    }
    DownloadOptions quick_retries(int retries) const {
        DownloadOptions options;
        options.retries = retries;
        options.retry_delay_s = 0.01;
        return options;
    }
};

}  // namespace

TEST(DataPrepDownload, DownloadsAndVerifiesAWholeFile) {
    DownloadFixture fixture;
    FixtureServer server(fixture.root, fixture.log);
    const std::string dest = fixture.dir.file("blob.bin");
    download_file(server.url("blob.bin"), dest, fixture.digest, fixture.quick_retries(0));
    EXPECT_EQ(read_file(dest), fixture.blob);
    EXPECT_FALSE(fs::exists(dest + ".part"));
    download_file(server.url("blob.bin"), dest, fixture.digest, fixture.quick_retries(0));  // present: no request
    EXPECT_EQ(read_file(fixture.log), "GET /blob.bin range=- 200\n");
}

TEST(DataPrepDownload, ResumesAnInterruptedTransferInTheNextRun) {
    DownloadFixture fixture;
    const std::string dest = fixture.dir.file("blob.bin");
    {
        FixtureServer dropping(fixture.root, fixture.log, {"--drop-after", "120000", "--drop-count", "1"});
        const std::string error = error_of([&] { download_file(dropping.url("blob.bin"), dest, fixture.digest, fixture.quick_retries(0)); });
        EXPECT_CONTAINS(error, dest);
        EXPECT_FALSE(fs::exists(dest)) << "an incomplete download never gets the final name";
        EXPECT_EQ(fs::file_size(dest + ".part"), 120000u);
    }
    FixtureServer server(fixture.root, fixture.log);
    download_file(server.url("blob.bin"), dest, fixture.digest, fixture.quick_retries(0));
    EXPECT_EQ(read_file(dest), fixture.blob);
    EXPECT_CONTAINS(read_file(fixture.log), "GET /blob.bin range=bytes=120000- 206");
}

TEST(DataPrepDownload, FinishesACompletePartFileWithoutDownloadingAgain) {
    // A run stopped after the transfer, before the rename: the server answers 416 to the range.
    DownloadFixture fixture;
    FixtureServer server(fixture.root, fixture.log);
    const std::string dest = fixture.dir.file("blob.bin");
    write_file(dest + ".part", fixture.blob);
    download_file(server.url("blob.bin"), dest, fixture.digest, fixture.quick_retries(0));
    EXPECT_EQ(read_file(dest), fixture.blob);
    EXPECT_EQ(read_file(fixture.log), "GET /blob.bin range=bytes=300000- 416\n");
    // A .part file longer than the file cannot be continued: discarded, downloaded afresh.
    const std::string other = fixture.dir.file("other.bin");
    write_file(other + ".part", fixture.blob + "extra");
    download_file(server.url("blob.bin"), other, fixture.digest, fixture.quick_retries(1));
    EXPECT_EQ(read_file(other), fixture.blob);
}

TEST(DataPrepDownload, RetriesAndResumesWithinOneRun) {
    DownloadFixture fixture;
    FixtureServer server(fixture.root, fixture.log, {"--drop-after", "50000", "--drop-count", "2"});
    const std::string dest = fixture.dir.file("blob.bin");
    download_file(server.url("blob.bin"), dest, fixture.digest, fixture.quick_retries(3));
    EXPECT_EQ(read_file(dest), fixture.blob);
    EXPECT_EQ(read_file(fixture.log),
              "GET /blob.bin range=- 200\nGET /blob.bin range=bytes=50000- 206\nGET /blob.bin range=bytes=100000- 206\n");
}

TEST(DataPrepDownload, RejectsAChecksumMismatch) {
    DownloadFixture fixture;
    FixtureServer server(fixture.root, fixture.log);
    const std::string dest = fixture.dir.file("blob.bin");
    const std::string wrong(64, 'f');
    const std::string error = error_of([&] { download_file(server.url("blob.bin"), dest, wrong, fixture.quick_retries(2)); });
    EXPECT_CONTAINS(error, "SHA-256 mismatch");
    EXPECT_CONTAINS(error, fixture.digest);
    EXPECT_FALSE(fs::exists(dest));
    EXPECT_FALSE(fs::exists(dest + ".part")) << "a bad download is not resumed";
}

TEST(DataPrepDownload, StartsOverWhenTheServerIgnoresRanges) {
    DownloadFixture fixture;
    FixtureServer server(fixture.root, fixture.log, {"--no-range"});
    const std::string dest = fixture.dir.file("blob.bin");
    write_file(dest + ".part", fixture.blob.substr(0, 1000));
    download_file(server.url("blob.bin"), dest, fixture.digest, fixture.quick_retries(0));
    EXPECT_EQ(read_file(dest), fixture.blob);
}

TEST(DataPrepDownload, ReportsHttpErrorsAndUnreachableServers) {
    DownloadFixture fixture;
    FixtureServer server(fixture.root, fixture.log);
    const std::string dest = fixture.dir.file("missing.bin");
    EXPECT_CONTAINS(error_of([&] { download_file(server.url("missing.bin"), dest, "", fixture.quick_retries(3)); }),
                    "HTTP status 404");
    EXPECT_EQ(read_file(fixture.log), "GET /missing.bin range=- 404\n") << "a 404 is not retried";
    // Port 1 on localhost: connection refused, like a machine without network.
    const std::string error = error_of([&] { download_file("http://127.0.0.1:1/x", dest, "", fixture.quick_retries(1)); });
    EXPECT_CONTAINS(error, "http://127.0.0.1:1/x");
    EXPECT_CONTAINS(error, "gave up after 2 attempts");
}

TEST(DataPrepDownload, PileRecipeDownloadsVerifiesAndSaysWhatToDoOffline) {
    DataPrepTempDir dir;
    const std::string log = dir.file("requests.log");
    FixtureServer server(kFixtures + "/pile", log);
    data_prep::PrepareOptions pile;
    pile.recipe = "pile";
    pile.data_dir = dir.path.string();
    pile.pile_train_files = 2;
    pile.checksums_file = kFixtures + "/pile/SHA256SUMS";
    pile.url = server.url("").substr(0, server.url("").size() - 1);
    pile.download.retry_delay_s = 0.01;
    const data_prep::PrepareSummary summary = data_prep::prepare_dataset(pile);
    EXPECT_EQ(read_file(dir.file("the_pile/downloads/train/01.jsonl.zst")), read_file(kFixtures + "/pile/train/01.jsonl.zst"));
    EXPECT_EQ(summary.splits.size(), 3u);

    pile.data_dir = dir.file("offline");
    pile.url = "http://127.0.0.1:1";
    pile.download.retries = 0;
    const std::string error = error_of([&] { data_prep::prepare_dataset(pile); });
    EXPECT_CONTAINS(error, "http://127.0.0.1:1/val.jsonl.zst");
    EXPECT_CONTAINS(error, "--source-dir");
    EXPECT_FALSE(fs::exists(dir.file("offline/the_pile/manifest.json")));
}
