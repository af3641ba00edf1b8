// libFuzzer target for what reaches security code from outside: any bytes as
// an API key secret (Authorization / X-API-Key) are authenticated against a
// store holding a real key -- a result or an Unauthenticated status, never a
// crash, and never a principal for anything but the real secret; and any
// bytes as a sealed value (an online record, a statistics body, a wrapped
// Parquet key) are opened by the Cipher -- an error or, only for bytes Seal
// made, the plaintext -- and as an online record with and without a cipher,
// decoded by the codec and straight into a SharedRecord alike.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "fstore/core/text.h"
#include "fstore/online/online_record_codec.h"
#include "fstore/online/shared_record.h"
#include "fstore/registry/registry.h"
#include "fstore/security/api_keys.h"
#include "fstore/security/encryption.h"

namespace {

struct World {
  std::unique_ptr<fstore::Registry> registry;
  std::unique_ptr<fstore::ApiKeyStore> keys;
  std::string secret;  // the one valid key
  std::shared_ptr<const fstore::Cipher> cipher;
};

World& TheWorld() {
  static World* world = [] {
    auto* w = new World;
    auto registry = fstore::RegistryFromUri("sqlite::memory:");
    if (!registry.ok() || !(*registry)->Migrate().ok()) __builtin_trap();
    w->registry = std::move(*registry);
    w->keys = std::make_unique<fstore::ApiKeyStore>(w->registry.get(), /*required=*/true);
    auto made = w->keys->Create(fstore::Role::kReader, {"fs_a"}, "fuzz");
    if (!made.ok()) __builtin_trap();
    w->secret = made->secret;
    auto cipher = fstore::Cipher::FromHex(std::string(64, '7'));
    if (!cipher.ok()) __builtin_trap();
    w->cipher = *cipher;
    return w;
  }();
  return *world;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = TheWorld();
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  auto auth = w.keys->Authenticate(input);
  if (auth.ok() && input != w.secret) __builtin_trap();  // only the real key passes
  (void)fstore::ApiKeyIdOf(input);
  (void)fstore::HexDecode(input);

  auto opened = w.cipher->Open(input, "fuzz");
  if (opened.ok()) {
    // Only a value sealed with this key and associated data opens: re-seal
    // and open must give the same plaintext back.
    auto sealed = w.cipher->Seal(*opened, "fuzz");
    if (!sealed.ok()) __builtin_trap();
    auto again = w.cipher->Open(*sealed, "fuzz");
    if (!again.ok() || *again != *opened) __builtin_trap();
  }
  auto sealed = w.cipher->Seal(input, "fuzz");
  if (!sealed.ok()) __builtin_trap();
  auto round = w.cipher->Open(*sealed, "fuzz");
  if (!round.ok() || *round != input) __builtin_trap();

  // Straight into a SharedRecord (how the stores read): decodes exactly
  // when the codec does, to the same record.
  auto record = fstore::DecodeOnlineRecord(input);
  auto shared = fstore::SharedRecord::Decode(input, nullptr, {});
  if (record.ok() != shared.ok()) __builtin_trap();
  if (record.ok() &&
      fstore::EncodeOnlineRecord((*shared)->ToRecord()) != fstore::EncodeOnlineRecord(*record)) {
    __builtin_trap();
  }
  auto opened_record = fstore::DecodeOnlineRecord(input, w.cipher.get(), "fuzz-key");
  auto opened_shared = fstore::SharedRecord::Decode(input, w.cipher.get(), "fuzz-key");
  if (opened_record.ok() != opened_shared.ok()) __builtin_trap();
  (void)fstore::DecodeOnlineRecordTimes(input);
  return 0;
}
