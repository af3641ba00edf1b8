#include "fstore/online/online_store.h"

#include <algorithm>
#include <charconv>

#include "fstore/online/redis/redis_online_store.h"
#include "fstore/online/shared_record.h"
#include "fstore/online/rocksdb/rocksdb_online_store.h"

namespace fstore {

Result<std::vector<std::shared_ptr<const SharedRecord>>> OnlineStore::ReadShared(
    const std::string& feature_set, const std::vector<EntityKey>& keys, int64_t ttl_micros,
    TimestampMicros now) {
  ARROW_ASSIGN_OR_RAISE(auto records, Read(feature_set, keys, ttl_micros, now));
  std::vector<std::shared_ptr<const SharedRecord>> out(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    if (records[i]) out[i] = std::make_shared<const SharedRecord>(*records[i]);
  }
  return out;
}

Result<std::optional<std::vector<int64_t>>> OnlineStore::WriteVersions(
    const std::vector<std::string>& /*feature_sets*/) {
  return std::nullopt;
}

Result<std::unique_ptr<OnlineStore>> OnlineStoreFromUri(const std::string& uri,
                                                        std::shared_ptr<const Cipher> cipher) {
  size_t sep = uri.find("://");
  std::string scheme = sep == std::string::npos ? "" : uri.substr(0, sep);
  std::string rest = sep == std::string::npos ? "" : uri.substr(sep + 3);
  if (scheme == "rocksdb") {
    RocksDbOnlineStoreOptions options;
    // One option: ?record_cache_mb=N (0: no record cache).
    const size_t query = rest.find('?');
    if (query != std::string::npos) {
      const std::string option = rest.substr(query + 1);
      rest.resize(query);
      constexpr std::string_view kCacheMb = "record_cache_mb=";
      const std::string number = option.substr(std::min(option.size(), kCacheMb.size()));
      size_t mb = 0;
      auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), mb);
      if (!option.starts_with(kCacheMb) || number.empty() || ec != std::errc() ||
          end != number.data() + number.size() || mb > (size_t{1} << 20)) {
        return InvalidArgument("online_store",
                               "unknown rocksdb:// option '" + option +
                                   "': expected record_cache_mb=<0 to 1048576>");
      }
      options.record_cache_bytes = mb << 20;
    }
    if (rest.empty()) return InvalidArgument("online_store", "rocksdb:// needs a directory");
    ARROW_ASSIGN_OR_RAISE(auto store, RocksDbOnlineStore::Open(rest, std::move(cipher), options));
    return std::unique_ptr<OnlineStore>(std::move(store));
  }
  if (scheme == "redis" || scheme == "rediss" || scheme == "redis+cluster" ||
      scheme == "rediss+cluster") {
    ARROW_ASSIGN_OR_RAISE(auto options, ParseRedisUri(uri));
    options.require_connection = false;  // Redis may come up after the server
    options.cipher = std::move(cipher);
    ARROW_ASSIGN_OR_RAISE(auto store, RedisOnlineStore::Open(options));
    return std::unique_ptr<OnlineStore>(std::move(store));
  }
  return InvalidArgument("online_store", "unknown online store scheme '" + scheme +
                                             "': expected rocksdb://, redis://, rediss:// or "
                                             "redis+cluster://");
}

}  // namespace fstore

namespace fstore {

namespace {
constexpr char kIntTag = 0x01;
constexpr char kStringTag = 0x02;
}  // namespace

void AppendEntityKeyPart(int64_t part, std::string* out) {
  uint64_t u = static_cast<uint64_t>(part) ^ (uint64_t{1} << 63);
  char bytes[9];
  bytes[0] = kIntTag;
  for (int i = 0; i < 8; ++i) bytes[1 + i] = static_cast<char>(u >> (56 - 8 * i));
  out->append(bytes, sizeof bytes);
}

void AppendEntityKeyPart(std::string_view part, std::string* out) {
  out->push_back(kStringTag);
  uint64_t n = part.size();
  while (n >= 0x80) {
    out->push_back(static_cast<char>((n & 0x7f) | 0x80));
    n >>= 7;
  }
  out->push_back(static_cast<char>(n));
  out->append(part);
}

std::string EncodeEntityKey(const EntityKey& key) {
  std::string out;
  out.reserve(key.size() * 12);
  for (const auto& part : key) {
    if (const int64_t* i = std::get_if<int64_t>(&part)) {
      AppendEntityKeyPart(*i, &out);
    } else {
      AppendEntityKeyPart(std::string_view(std::get<std::string>(part)), &out);
    }
  }
  return out;
}

Result<EntityKey> DecodeEntityKey(std::string_view bytes) {
  EntityKey key;
  size_t pos = 0;
  while (pos < bytes.size()) {
    char tag = bytes[pos++];
    if (tag == kIntTag) {
      if (bytes.size() - pos < 8) return InvalidArgument("entity_key", "truncated int key part");
      uint64_t u = 0;
      for (int i = 0; i < 8; ++i) u = (u << 8) | static_cast<uint8_t>(bytes[pos + i]);
      pos += 8;
      key.emplace_back(static_cast<int64_t>(u ^ (uint64_t{1} << 63)));
    } else if (tag == kStringTag) {
      uint64_t n = 0;
      int shift = 0;
      while (true) {
        if (pos >= bytes.size() || shift > 63) {
          return InvalidArgument("entity_key", "truncated string key part length");
        }
        uint8_t b = static_cast<uint8_t>(bytes[pos++]);
        n |= static_cast<uint64_t>(b & 0x7f) << shift;
        if ((b & 0x80) == 0) break;
        shift += 7;
      }
      if (n > bytes.size() - pos) return InvalidArgument("entity_key", "truncated string key part");
      key.emplace_back(std::string(bytes.substr(pos, n)));
      pos += n;
    } else {
      return InvalidArgument("entity_key", "unknown key part tag " +
                                               std::to_string(static_cast<uint8_t>(tag)));
    }
  }
  if (key.empty()) return InvalidArgument("entity_key", "empty entity key");
  return key;
}

}  // namespace fstore
