#pragma once

// API keys (issue #7): creation, salted hashing, constant-time verification,
// and the server's view of the registry's keys.
//
// A key's secret is "fsk_<16 hex>_<43 base64url characters>": the 16 hex
// digits are its public id ("key_<16 hex>"), so a lookup needs no scan; the
// last part is 32 random bytes (OpenSSL RAND_bytes). The registry keeps only
// a 16-byte random salt and SHA-256(salt || secret), both hex. The secret is
// shown once, when the key is created, and never logged or stored.

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fstore/core/periodic_thread.h"
#include "fstore/core/status.h"
#include "fstore/registry/operations.h"
#include "fstore/registry/registry.h"
#include "fstore/security/principal.h"

namespace fstore {

/// A newly created key: its record (as stored) and the secret, shown once.
struct NewApiKey {
  ApiKeyRecord record;
  std::string secret;
};

/// Makes a key with a fresh id, secret and salt; does not store it.
/// `feature_sets` must be names (checked: non-empty, no duplicates).
Result<NewApiKey> MakeApiKey(Role role, std::vector<std::string> feature_sets,
                             std::string name);

/// The key id a secret names ("key_<16 hex>"), or nullopt when the text is
/// not shaped like a secret.
std::optional<std::string> ApiKeyIdOf(std::string_view secret);

/// Hex SHA-256(salt || secret) for a hex salt.
std::string HashApiKeySecret(std::string_view salt_hex, std::string_view secret);

/// Whether `secret` hashes to `record.hash` with its salt, compared in
/// constant time (CRYPTO_memcmp). Does not look at revocation.
bool VerifyApiKeySecret(const ApiKeyRecord& record, std::string_view secret);

/// The principal a (valid) key record stands for.
Principal PrincipalOf(const ApiKeyRecord& record);

/// Result of authenticating a request's credential.
struct Authentication {
  /// Set when authentication is on and the key is valid; owned by the
  /// snapshot `hold` keeps alive.
  const Principal* principal = nullptr;
  std::shared_ptr<const void> hold;
};

/// The server's cache of the registry's keys. Authentication is on when any
/// key record exists (a registry with revoked keys only stays locked: revoking
/// the last key never opens the server) or when `required`. The cache reloads
/// ListApiKeys on the first request, then every `refresh_interval` on a
/// thread of its own, so that keys created or revoked by the CLI (another
/// process) take effect within about that interval, and no request after
/// the first waits on the registry (before, the request that found the
/// keys stale reloaded them inline, a registry query on the serving path
/// four times a second). A stored key that cannot be read (a damaged row)
/// is logged and skipped: it authenticates nothing but keeps authentication
/// on, and the other keys load. Thread-safe.
class ApiKeyStore {
 public:
  ApiKeyStore(Registry* registry, bool required,
              std::chrono::milliseconds refresh_interval = std::chrono::milliseconds(250));

  /// Whether requests need a key now (reloading first if stale). Unavailable
  /// when the keys cannot be read and none were read before.
  Result<bool> Enabled();

  /// Authenticates a secret (nullopt: no credential sent). With
  /// authentication off: principal null (anonymous). Otherwise Unauthenticated
  /// (field "Authorization") for a missing, unknown, malformed or revoked key;
  /// the comparison runs against a dummy hash for unknown ids so the time
  /// taken does not tell whether an id exists.
  Result<Authentication> Authenticate(std::optional<std::string_view> secret);

  /// Creates and stores a key; the cache sees it at once.
  Result<NewApiKey> Create(Role role, std::vector<std::string> feature_sets, std::string name);
  /// Revokes a key by id: NotFound for an unknown id, Conflict when already
  /// revoked (also when a concurrent call revoked it first: of those, exactly
  /// one succeeds), Internal naming the key when its row cannot be read.
  /// Returns the revoked record.
  Result<ApiKeyRecord> Revoke(std::string_view id);
  /// Every key, revoked ones too (records carry salt and hash: callers
  /// showing them must leave those out). Internal, naming the key, when a
  /// stored key cannot be read.
  Result<std::vector<ApiKeyRecord>> List();

  /// Reloads now (tests, and after this process changes keys).
  Status Reload();

 private:
  struct Snapshot {
    bool any_key = false;
    std::unordered_map<std::string, ApiKeyRecord> by_id;
    std::unordered_map<std::string, Principal> principals;  ///< live keys only
  };
  Result<std::shared_ptr<const Snapshot>> Current();
  /// Reload() with reload_mu_ held.
  Status ReloadLocked();

  Registry* registry_;
  const bool required_;
  const std::chrono::milliseconds refresh_interval_;
  std::mutex mu_;  ///< guards snapshot_
  std::shared_ptr<const Snapshot> snapshot_;
  std::mutex reload_mu_;  ///< one reload at a time
  /// The rows the last reload could not read (guarded by reload_mu_), so
  /// that each is logged once.
  std::vector<UnreadableApiKey> unreadable_;
  std::once_flag refresher_started_;
  /// Started by the first Current(); last, so stopped before the members
  /// it uses go.
  PeriodicThread refresher_;
};

}  // namespace fstore
