#include "fstore/security/api_keys.h"

#include <algorithm>
#include <array>
#include <set>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <spdlog/spdlog.h>

#include "fstore/core/text.h"
#include "fstore/core/time.h"

namespace fstore {

namespace {

constexpr std::string_view kSecretPrefix = "fsk_";
constexpr std::string_view kIdPrefix = "key_";
constexpr size_t kIdHexChars = 16;
constexpr size_t kSecretRandomBytes = 32;
constexpr size_t kSecretRandomChars = 43;  // base64url of 32 bytes, unpadded
constexpr size_t kSaltBytes = 16;

std::string Hex(const unsigned char* data, size_t size) {
  return HexEncode(std::string_view(reinterpret_cast<const char*>(data), size));
}

/// Decodes hex into bytes; bad text gives "" (stored salts are always well
/// formed; a damaged one just never verifies).
std::string Unhex(std::string_view hex) { return HexDecode(hex).value_or(""); }

Result<std::string> RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    return Internal("the random number generator failed (OpenSSL RAND_bytes)");
  }
  return out;
}

std::string Base64Url(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return out;
}

bool IsBase64UrlChar(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '_';
}

std::array<unsigned char, 32> Sha256(std::string_view salt, std::string_view secret) {
  std::array<unsigned char, 32> digest{};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned int size = 0;
  if (ctx == nullptr || EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1 ||
      EVP_DigestUpdate(ctx, salt.data(), salt.size()) != 1 ||
      EVP_DigestUpdate(ctx, secret.data(), secret.size()) != 1 ||
      EVP_DigestFinal_ex(ctx, digest.data(), &size) != 1) {
    // Leaves an all-zero digest, which no stored hash equals by chance.
    spdlog::error("SHA-256 failed (OpenSSL EVP)");
    digest.fill(0);
  }
  EVP_MD_CTX_free(ctx);
  return digest;
}

/// What unknown ids are compared against, so that they cost the same hashing
/// and comparison as known ones.
const ApiKeyRecord& DummyRecord() {
  static const ApiKeyRecord dummy = [] {
    ApiKeyRecord r;
    r.salt = std::string(kSaltBytes * 2, '0');
    r.hash = std::string(64, '0');
    return r;
  }();
  return dummy;
}

Status Unauthenticated(std::string message) {
  return MakeError(ErrorCode::kUnauthenticated, std::move(message), "Authorization");
}

}  // namespace

Result<NewApiKey> MakeApiKey(Role role, std::vector<std::string> feature_sets,
                             std::string name) {
  std::set<std::string> seen;
  for (size_t i = 0; i < feature_sets.size(); ++i) {
    const std::string& fs = feature_sets[i];
    const std::string field = "feature_sets[" + std::to_string(i) + "]";
    if (fs.empty()) return InvalidArgument(field, "a feature set name must not be empty");
    if (!seen.insert(fs).second) {
      return InvalidArgument(field, "feature set '" + fs + "' is listed twice");
    }
  }
  ARROW_ASSIGN_OR_RAISE(std::string id_bytes, RandomBytes(kIdHexChars / 2));
  ARROW_ASSIGN_OR_RAISE(std::string secret_bytes, RandomBytes(kSecretRandomBytes));
  ARROW_ASSIGN_OR_RAISE(std::string salt_bytes, RandomBytes(kSaltBytes));
  const std::string id_hex =
      Hex(reinterpret_cast<const unsigned char*>(id_bytes.data()), id_bytes.size());
  NewApiKey key;
  key.secret = std::string(kSecretPrefix) + id_hex + "_" + Base64Url(secret_bytes);
  key.record.id = std::string(kIdPrefix) + id_hex;
  key.record.name = std::move(name);
  key.record.role = std::string(RoleName(role));
  key.record.feature_sets = std::move(feature_sets);
  key.record.salt =
      Hex(reinterpret_cast<const unsigned char*>(salt_bytes.data()), salt_bytes.size());
  key.record.hash = HashApiKeySecret(key.record.salt, key.secret);
  key.record.created_at = NowMicros();
  return key;
}

std::optional<std::string> ApiKeyIdOf(std::string_view secret) {
  if (secret.size() != kSecretPrefix.size() + kIdHexChars + 1 + kSecretRandomChars ||
      !secret.starts_with(kSecretPrefix)) {
    return std::nullopt;
  }
  const std::string_view id_hex = secret.substr(kSecretPrefix.size(), kIdHexChars);
  for (char c : id_hex) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return std::nullopt;
  }
  if (secret[kSecretPrefix.size() + kIdHexChars] != '_') return std::nullopt;
  for (char c : secret.substr(kSecretPrefix.size() + kIdHexChars + 1)) {
    if (!IsBase64UrlChar(c)) return std::nullopt;
  }
  return std::string(kIdPrefix) + std::string(id_hex);
}

std::string HashApiKeySecret(std::string_view salt_hex, std::string_view secret) {
  const auto digest = Sha256(Unhex(salt_hex), secret);
  return Hex(digest.data(), digest.size());
}

bool VerifyApiKeySecret(const ApiKeyRecord& record, std::string_view secret) {
  const auto computed = Sha256(Unhex(record.salt), secret);
  const std::string stored = Unhex(record.hash);
  // A damaged stored hash (wrong length) is compared against zeros: same
  // work, and all-zero never matches a real digest.
  std::array<unsigned char, 32> expected{};
  if (stored.size() == expected.size()) std::copy(stored.begin(), stored.end(), expected.begin());
  return CRYPTO_memcmp(computed.data(), expected.data(), expected.size()) == 0 &&
         stored.size() == expected.size();
}

Principal PrincipalOf(const ApiKeyRecord& record) {
  Principal p;
  p.key_id = record.id;
  auto role = ParseRole(record.role);
  // A record with an unknown role (written by a newer version?) gets the
  // least power rather than none of its checks.
  p.role = role.ok() ? *role : Role::kReader;
  p.feature_sets = record.feature_sets;
  return p;
}

ApiKeyStore::ApiKeyStore(Registry* registry, bool required,
                         std::chrono::milliseconds refresh_interval)
    : registry_(registry), required_(required), refresh_interval_(refresh_interval) {}

Status ApiKeyStore::Reload() {
  std::lock_guard reload_lock(reload_mu_);
  return ReloadLocked();
}

Status ApiKeyStore::ReloadLocked() {
  ARROW_ASSIGN_OR_RAISE(ApiKeyListing listing, registry_->ListApiKeys());
  auto snapshot = std::make_shared<Snapshot>();
  // An unreadable row keeps authentication on (it is a key, maybe the only
  // one) but is left out of by_id: it authenticates nothing.
  snapshot->any_key = !listing.keys.empty() || !listing.unreadable.empty();
  for (ApiKeyRecord& r : listing.keys) {
    if (!r.revoked_at) snapshot->principals.emplace(r.id, PrincipalOf(r));
    snapshot->by_id.emplace(r.id, std::move(r));
  }
  for (const UnreadableApiKey& bad : listing.unreadable) {
    // Logged by the reload that finds it, not by each later one (four a
    // second).
    if (std::find(unreadable_.begin(), unreadable_.end(), bad) == unreadable_.end()) {
      spdlog::error("API key {} is skipped, it cannot be read (the other keys are loaded): {}",
                    bad.id, bad.reason);
    }
  }
  unreadable_ = std::move(listing.unreadable);
  std::lock_guard lock(mu_);
  snapshot_ = std::move(snapshot);
  return Status::OK();
}

Result<std::shared_ptr<const ApiKeyStore::Snapshot>> ApiKeyStore::Current() {
  std::shared_ptr<const Snapshot> snapshot;
  {
    std::lock_guard lock(mu_);
    snapshot = snapshot_;
  }
  if (!snapshot) {
    // Nothing read yet: this request must wait for the keys.
    ARROW_RETURN_NOT_OK(Reload());
    std::lock_guard lock(mu_);
    snapshot = snapshot_;
  }
  if (refresh_interval_.count() > 0) {
    std::call_once(refresher_started_, [this] {
      refresher_.Start(refresh_interval_, [this] {
        // Keep serving with the keys we had (fail closed only when we never
        // read them); try again after another interval.
        if (Status st = Reload(); !st.ok()) {
          spdlog::warn("reloading API keys failed, keeping the previous ones: {}", st.ToString());
        }
      });
    });
  }
  return snapshot;
}

Result<bool> ApiKeyStore::Enabled() {
  auto snapshot = Current();
  if (!snapshot.ok()) {
    return Unavailable("cannot read the API keys from the registry: " +
                       snapshot.status().message());
  }
  return required_ || (*snapshot)->any_key;
}

Result<Authentication> ApiKeyStore::Authenticate(std::optional<std::string_view> secret) {
  auto current = Current();
  if (!current.ok()) {
    return Unavailable("cannot read the API keys from the registry: " +
                       current.status().message());
  }
  std::shared_ptr<const Snapshot> snapshot = std::move(*current);
  if (!required_ && !snapshot->any_key) return Authentication{};
  if (!secret) {
    return Unauthenticated(
        "an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'");
  }
  const std::optional<std::string> id = ApiKeyIdOf(*secret);
  auto it = id ? snapshot->by_id.find(*id) : snapshot->by_id.end();
  const ApiKeyRecord& record = it == snapshot->by_id.end() ? DummyRecord() : it->second;
  const bool verified = VerifyApiKeySecret(record, *secret);
  if (it == snapshot->by_id.end() || !verified) return Unauthenticated("invalid API key");
  if (record.revoked_at) {
    return Unauthenticated("API key " + record.id + " is revoked");
  }
  Authentication out;
  out.principal = &snapshot->principals.at(record.id);
  out.hold = snapshot;
  return out;
}

Result<NewApiKey> ApiKeyStore::Create(Role role, std::vector<std::string> feature_sets,
                                      std::string name) {
  ARROW_ASSIGN_OR_RAISE(NewApiKey key, MakeApiKey(role, std::move(feature_sets), std::move(name)));
  ARROW_RETURN_NOT_OK(registry_->InsertApiKey(key.record));
  if (Status st = Reload(); !st.ok()) spdlog::warn("reloading API keys failed: {}", st.ToString());
  return key;
}

Result<ApiKeyRecord> ApiKeyStore::Revoke(std::string_view id) {
  ARROW_ASSIGN_OR_RAISE(ApiKeyListing listing, registry_->ListApiKeys());
  for (const UnreadableApiKey& bad : listing.unreadable) {
    if (bad.id == id) return Internal(bad.reason);
  }
  for (ApiKeyRecord& r : listing.keys) {
    if (r.id != id) continue;
    bool revoked = false;
    if (!r.revoked_at) {
      r.revoked_at = NowMicros();
      ARROW_ASSIGN_OR_RAISE(revoked, registry_->RevokeApiKey(r.id, *r.revoked_at));
    }
    // Not revoked here: it was before, or a concurrent revocation (the API
    // and the CLI, two servers) got there first.
    if (!revoked) return Conflict("API key " + r.id + " is already revoked");
    if (Status st = Reload(); !st.ok()) {
      spdlog::warn("reloading API keys failed: {}", st.ToString());
    }
    return r;
  }
  return NotFound("no API key with id '" + std::string(id) + "'");
}

Result<std::vector<ApiKeyRecord>> ApiKeyStore::List() {
  ARROW_ASSIGN_OR_RAISE(ApiKeyListing listing, registry_->ListApiKeys());
  // An error naming the bad row rather than a list that leaves a key out.
  if (!listing.unreadable.empty()) return Internal(listing.unreadable.front().reason);
  return std::move(listing.keys);
}

}  // namespace fstore
