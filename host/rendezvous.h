// Shared-file rendezvous: how ranks started without MPI exchange the NCCL unique id (plain C++;
// the implementation lives in rendezvous.cpp).
//
// Rank 0 publishes a small payload in a file every rank can see (--rendezvous PATH or
// GPT_RENDEZVOUS, on a filesystem all nodes share); the other ranks poll for it. Rank 0 writes
// PATH.tmp.<pid> and renames it to PATH, so a reader never sees half a file; it refuses to start
// when PATH already exists (a file left over from an earlier run would hand out a stale id), and
// deletes PATH once the communicator is up (train/nccl_context.cuh).
//
// File layout: 8-byte magic "GPTRDZV1", int32 world size, int32 payload size, the payload.
#pragma once

#include <string>
#include <vector>

namespace distributed {

// The --rendezvous flag's value when given, else GPT_RENDEZVOUS from the environment, else "".
std::string rendezvous_path_from(const std::string& flag_value);

// Rank 0: writes `payload` to `path` atomically and returns it. Other ranks: poll `path` every
// 50 ms for up to timeout_s seconds and return the payload rank 0 wrote. Every failure (a stale
// or foreign file, a different world size, an unwritable directory, the timeout) ends the process
// with a message that says which and what to do.
std::vector<char> rendezvous_broadcast(const std::string& path, int rank, int world_size,
                                       const std::vector<char>& payload, double timeout_s);

}  // namespace distributed
