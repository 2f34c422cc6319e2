// Source files of the download recipes: a file under the recipe's source directory, verified
// against the --checksums list when that names it, downloaded first (resumably,
// data_prep/src/download.h) when it is missing. Shared by data_prep/src/recipes.cpp and the
// HellaSwag recipe (data_prep/src/hellaswag_recipe.cpp).
#pragma once

#include <cstdio>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>

#include "data_prep/src/download.h"
#include "data_prep/src/recipes.h"
#include "data_prep/src/sha256.h"

namespace data_prep {

class SourceFetcher {
  public:
    SourceFetcher(const PrepareOptions& options, std::string source_dir)
        : options_(options), source_dir_(std::move(source_dir)) {
        if (!options.checksums_file.empty()) checksums_ = read_checksum_file(options.checksums_file);
    }

    // <source_dir>/<relative>: verified against the checksum list when it has one for the
    // file, downloaded from <url> first when it is missing.
    std::string fetch(const std::string& relative, const std::string& url) {
        const std::string dest = source_dir_ + "/" + relative;
        const std::string expected = expected_sha256(relative);
        if (std::filesystem::exists(dest)) {
            if (!expected.empty()) verify(dest, expected);
            return dest;
        }
        std::error_code error;
        std::filesystem::create_directories(std::filesystem::path(dest).parent_path(), error);
        if (error) throw std::runtime_error("cannot create download directory for " + dest + ": " + error.message());
        try {
            download_file(url, dest, expected, options_.download);
        } catch (const DownloadError& e) {
            throw std::runtime_error(std::string(e.what()) + "\nIf this machine has no network (or the URL is gone), download " +
                                     url + " elsewhere, put it at " + dest +
                                     " (or in a directory passed with --source-dir DIR) and rerun; "
                                     "--url points the recipe at a mirror.");
        }
        return dest;
    }

  private:
    std::string expected_sha256(const std::string& relative) const {
        for (const std::string& key : {relative, std::filesystem::path(relative).filename().string()}) {
            const auto it = checksums_.find(key);
            if (it != checksums_.end()) return it->second;
        }
        return "";
    }

    void verify(const std::string& path, const std::string& expected) const {
        std::fprintf(stderr, "verifying %s against %s\n", path.c_str(), options_.checksums_file.c_str());
        const std::string actual = sha256_file(path);
        if (actual != expected) {
            throw std::runtime_error(path + ": SHA-256 " + actual + " does not match " + expected + " from " +
                                     options_.checksums_file + ": the file is corrupt or a different version; delete it "
                                     "to download it again");
        }
    }

    const PrepareOptions& options_;
    std::string source_dir_;
    std::map<std::string, std::string> checksums_;
};


}  // namespace data_prep
