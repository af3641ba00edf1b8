"""Reading what an fstore server writes under encryption at rest.

With ``FSTORE_ENCRYPTION_KEY`` (64 hex characters) the server writes its
offline Parquet files and batch serving outputs with Parquet modular
encryption: an encrypted footer, every column encrypted, the file keys
wrapped by a KMS client whose master key is the fstore key (the wrapped key is
``base64(seal(key, associated data = "fstore-master-key"))``, with the sealed
format below). This module is that KMS client for
``pyarrow.parquet.encryption``, so the files can be read outside the server::

    from fstore.encryption import read_table
    table = read_table("out/part-0.parquet", key_hex)

A sealed value is ``b"FSE1" | key id (8 bytes: SHA-256(b"fstore-key-id" + key)[:8])
| 12-byte nonce | AES-256-GCM ciphertext | 16-byte tag``.

Needs the ``cryptography`` package (``pip install fstore[encryption]``).
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Optional

MAGIC = b"FSE1"
KMS_INSTANCE_ID = "fstore"
MASTER_KEY_ID = "fstore-master-key"


class EncryptionError(ValueError):
    """A value or file cannot be opened with the key given (wrong key, corrupt, not sealed)."""


def _aesgcm(key: bytes):
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("fstore.encryption needs the 'cryptography' package "
                          "(pip install fstore[encryption])") from e
    return AESGCM(key)


def parse_key(key_hex: str) -> bytes:
    """The 32-byte key of 64 hex characters (surrounding whitespace ignored)."""
    text = key_hex.strip()
    if len(text) != 64:
        raise ValueError(f"an encryption key is 64 hex characters; got {len(text)}")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ValueError("an encryption key is 64 hex characters (0-9, a-f)") from None


class Cipher:
    """The server's AES-256-GCM sealing (security/encryption.h), in Python."""

    def __init__(self, key_hex: str):
        self._key = parse_key(key_hex)
        self.key_id = hashlib.sha256(b"fstore-key-id" + self._key).digest()[:8]

    def seal(self, plaintext: bytes, associated_data: bytes = b"") -> bytes:
        nonce = os.urandom(12)
        body = _aesgcm(self._key).encrypt(nonce, bytes(plaintext), associated_data or None)
        return MAGIC + self.key_id + nonce + body

    def open(self, sealed: bytes, associated_data: bytes = b"") -> bytes:
        sealed = bytes(sealed)
        if not sealed.startswith(MAGIC):
            raise EncryptionError("not an encrypted value")
        if len(sealed) < 4 + 8 + 12 + 16:
            raise EncryptionError("encrypted value is truncated")
        if sealed[4:12] != self.key_id:
            raise EncryptionError("the data was sealed with a different encryption key")
        try:
            return _aesgcm(self._key).decrypt(sealed[12:24], sealed[24:], associated_data or None)
        except Exception:
            raise EncryptionError("authentication failed: the encrypted data is corrupt "
                                  "or was altered") from None


def crypto_factory(key_hex: str):
    """A pyarrow CryptoFactory whose KMS client is the fstore key."""
    import pyarrow.parquet.encryption as pe

    cipher = Cipher(key_hex)

    class _KmsClient(pe.KmsClient):
        def __init__(self, _config):
            pe.KmsClient.__init__(self)

        def wrap_key(self, key_bytes, master_key_identifier):
            sealed = cipher.seal(key_bytes, master_key_identifier.encode())
            return base64.b64encode(sealed).decode("ascii")

        def unwrap_key(self, wrapped_key, master_key_identifier):
            return cipher.open(base64.b64decode(wrapped_key), master_key_identifier.encode())

    return pe.CryptoFactory(_KmsClient)


def kms_connection_config():
    import pyarrow.parquet.encryption as pe

    return pe.KmsConnectionConfig(kms_instance_id=KMS_INSTANCE_ID)


def decryption_properties(key_hex: str):
    """FileDecryptionProperties for reading one of the server's Parquet files."""
    import pyarrow.parquet.encryption as pe

    return crypto_factory(key_hex).file_decryption_properties(
        kms_connection_config(), pe.DecryptionConfiguration())


def encryption_properties(key_hex: str):
    """FileEncryptionProperties that write files the server can read (as it writes them)."""
    import pyarrow.parquet.encryption as pe

    config = pe.EncryptionConfiguration(footer_key=MASTER_KEY_ID, uniform_encryption=True,
                                        data_key_length_bits=256)
    return crypto_factory(key_hex).file_encryption_properties(kms_connection_config(), config)


def read_table(path, key_hex: str, filesystem: Optional[object] = None, **kwargs):
    """Reads one Parquet file the server wrote with encryption at rest."""
    import pyarrow.parquet as pq

    return pq.read_table(path, filesystem=filesystem,
                         decryption_properties=decryption_properties(key_hex), **kwargs)
