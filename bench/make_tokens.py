#!/usr/bin/env python3
"""Makes the JWTs the security scenarios send, into the run's temp dir:

  hs256.jwt        HS256, signed with the secret in bench/rampart-security.toml
  es256.pub.pem    a fresh P-256 public key (the private key is made and used with openssl)
  es256.jwt        ES256, signed with that key

Both are valid for a day and carry the claims the bench configs require.
"""

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
from pathlib import Path

HS256_SECRET = b"bench-secret-bench-secret-bench-secret-0123456789"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signing_input(alg: str) -> str:
    now = int(time.time())
    header = {"alg": alg, "typ": "JWT"}
    claims = {"sub": "user-42", "email": "bench@example.com", "role": "user",
              "iss": "https://id.example.com", "aud": "api", "iat": now, "exp": now + 86400}
    return b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())


def der_to_raw(der: bytes, size: int = 32) -> bytes:
    """An ECDSA DER signature (SEQUENCE of two INTEGERs) as JOSE's r || s."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        length = der[i + 1]
        value = der[i + 2 : i + 2 + length].lstrip(b"\x00")
        out += value.rjust(size, b"\x00")
        i += 2 + length
    return out


def main() -> None:
    tmp = Path(sys.argv[1])
    text = signing_input("HS256")
    mac = hmac.new(HS256_SECRET, text.encode(), hashlib.sha256).digest()
    (tmp / "hs256.jwt").write_text(text + "." + b64(mac))

    key = tmp / "es256.key.pem"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(key)], check=True)
    subprocess.run(["openssl", "ec", "-in", str(key), "-pubout", "-out", str(tmp / "es256.pub.pem")],
                   check=True, capture_output=True)
    text = signing_input("ES256")
    der = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key)], input=text.encode(),
                         check=True, capture_output=True).stdout
    (tmp / "es256.jwt").write_text(text + "." + b64(der_to_raw(der)))


if __name__ == "__main__":
    main()
