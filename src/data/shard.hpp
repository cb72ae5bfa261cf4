// shard.hpp: token shards in llm.c's format: 256 int32 header words (magic 20240520, version 1,
// token count), then the tokens as uint16.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace strata {

constexpr int32_t kShardMagic = 20240520;
constexpr int32_t kShardVersion = 1;

// Reads and checks a shard: magic, version, size against the header, every token < vocab.
std::vector<uint16_t> shard_read(const std::string& path, int vocab);
// Writes a shard under a temporary name, then renames it into place.
void shard_write(const std::string& path, const uint16_t* tokens, size_t n);

}  // namespace strata
