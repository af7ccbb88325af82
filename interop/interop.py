#!/usr/bin/env python3
"""Interoperability of the dlms-sec CLI with two independent implementations.

Oracles (installed by interop/run.sh, never vendored):
  * pyca `cryptography` (OpenSSL): the reference. Frames are assembled here,
    byte by byte, from the suite-0 rules (Green Book Tables 37, 38, 40 and
    43; docs/design.md); the cryptography is
    `AESGCM`, `modes.GCM` with a 12-octet tag, `modes.CTR` and
    `aes_key_wrap`/`aes_key_unwrap`.
  * gurux-dlms (its own pure-Python AES-GCM): a second sender and receiver.
    Where it disagrees with us and pyca agrees with us, that is recorded as a
    peer defect (interop/README.md lists them), not as ours.

Only OUR mismatches fail the run. The last line is `N passed, M failed`.
"""

import argparse
import contextlib
import io
import random
import shlex
import subprocess
import sys
import time
from collections import Counter, defaultdict
from types import SimpleNamespace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from gurux_dlms.AesGcmParameter import AesGcmParameter
from gurux_dlms.GXByteBuffer import GXByteBuffer
from gurux_dlms.GXCiphering import GXCiphering
from gurux_dlms.GXDLMSChippering import GXDLMSChippering
from gurux_dlms.enums.Security import Security
from gurux_dlms.secure.GXDLMSSecureClient import GXDLMSSecureClient

# ---------------------------------------------------------------------------
# The protocol facts the reference sender/receiver use.

# plain tag -> (glo tag, ded tag) of the service-specific ciphered APDUs
SERVICES = {
    0x01: (0x21, 0x41), 0x05: (0x25, 0x45), 0x06: (0x26, 0x46),
    0x08: (0x28, 0x48), 0x0C: (0x2C, 0x4C), 0x0D: (0x2D, 0x4D),
    0x0E: (0x2E, 0x4E), 0x16: (0x36, 0x56), 0x18: (0x38, 0x58),
    0xC0: (0xC8, 0xD0), 0xC1: (0xC9, 0xD1), 0xC2: (0xCA, 0xD2),
    0xC3: (0xCB, 0xD3), 0xC4: (0xCC, 0xD4), 0xC5: (0xCD, 0xD5),
    0xC7: (0xCF, 0xD7),
}
GLO = {g: p for p, (g, _) in SERVICES.items()}
DED = {d: p for p, (_, d) in SERVICES.items()}
GENERAL_GLO, GENERAL_DED = 0xDB, 0xDC
POLICY_SC = {"auth": 0x10, "enc": 0x20, "auth-enc": 0x30}
SC_POLICY = {v: k for k, v in POLICY_SC.items()}
BROADCAST_BIT = 0x40
TAG_LEN = 12


def axdr_len(n):
    """Minimal A-XDR length (one octet below 0x80, else 0x81 nn or 0x82 nn nn)."""
    if n < 0x80:
        return bytes([n])
    if n <= 0xFF:
        return bytes([0x81, n])
    if n <= 0xFFFF:
        return bytes([0x82]) + n.to_bytes(2, "big")
    raise ValueError("length")


def read_axdr_len(buf, pos):
    first = buf[pos]
    if first < 0x80:
        return first, pos + 1
    n = first - 0x80
    if n == 0 or n > 4 or pos + 1 + n > len(buf):
        raise ValueError("bad A-XDR length")
    value = int.from_bytes(buf[pos + 1:pos + 1 + n], "big")
    if value < 0x80 or (n > 1 and value < (1 << (8 * (n - 1)))):
        raise ValueError("non-minimal A-XDR length")
    return value, pos + 1 + n


class Rejected(Exception):
    """The reference receiver refuses a frame."""


# ---------------------------------------------------------------------------
# pyca reference: sender and receiver.

def pyca_gcm(key, iv, aad, pt):
    out = AESGCM(key).encrypt(iv, pt, aad)
    return out[:-16], out[-16:][:TAG_LEN]


def pyca_ctr(key, iv, data):
    # Encryption only: GCM without a tag is CTR from J0 + 1 = IV || 00000002.
    c = Cipher(algorithms.AES(key), modes.CTR(iv + b"\x00\x00\x00\x02")).encryptor()
    return c.update(data) + c.finalize()


def pyca_gcm_open(key, iv, aad, ct, tag):
    d = Cipher(algorithms.AES(key), modes.GCM(iv, tag, min_tag_length=TAG_LEN)).decryptor()
    d.authenticate_additional_data(aad)
    pt = d.update(ct)
    d.finalize()  # raises InvalidTag
    return pt


def enc_key(case):
    return {"unicast": case["ek"], "broadcast": case["bk"], "dedicated": case["dk"]}[case["key"]]


def case_sc(case):
    return POLICY_SC[case["policy"]] | (BROADCAST_BIT if case["key"] == "broadcast" else 0)


def outer_tag(case):
    if case["form"] == "general-glo":
        return GENERAL_GLO
    if case["form"] == "general-ded":
        return GENERAL_DED
    glo, ded = SERVICES[case["apdu"][0]]
    return ded if case["key"] == "dedicated" else glo


def pyca_protect(case):
    sc = case_sc(case)
    key, ak, apdu = enc_key(case), case["ak"], case["apdu"]
    iv = case["title"] + case["ic"].to_bytes(4, "big")
    if sc & 0x30 == 0x10:
        _, tag = pyca_gcm(key, iv, bytes([sc]) + ak + apdu, b"")
        body = apdu + tag
    elif sc & 0x30 == 0x20:
        body = pyca_ctr(key, iv, apdu)
    else:
        ct, tag = pyca_gcm(key, iv, bytes([sc]) + ak, apdu)
        body = ct + tag
    content = bytes([sc]) + case["ic"].to_bytes(4, "big") + body
    tag_byte = outer_tag(case)
    head = bytes([tag_byte])
    if tag_byte in (GENERAL_GLO, GENERAL_DED):
        head += axdr_len(8) + case["title"]
    return head + axdr_len(len(content)) + content


def pyca_unprotect(frame, case):
    """A receiver built on pyca: parse, pick the key, check the policy and
    the service tag, verify with a 12-octet tag, decrypt."""
    try:
        tag_byte = frame[0]
        pos = 1
        title = case["title"]
        if tag_byte in (GENERAL_GLO, GENERAL_DED):
            n, pos = read_axdr_len(frame, pos)
            if n != 8 or frame[pos:pos + 8] != case["title"]:
                raise Rejected("system title")
            pos += 8
        elif tag_byte not in GLO and tag_byte not in DED:
            raise Rejected("tag %02X" % tag_byte)
        n, pos = read_axdr_len(frame, pos)
        if pos + n != len(frame) or n < 5:
            raise Rejected("content length")
        sc = frame[pos]
        ic = frame[pos + 1:pos + 5]
        body = frame[pos + 5:]
        dedicated = tag_byte == GENERAL_DED or tag_byte in DED
        if sc & 0x8F or sc & 0x30 == 0:
            raise Rejected("SC %02X" % sc)
        if dedicated and sc & BROADCAST_BIT:
            raise Rejected("key-set bit with the dedicated key")
        if sc & 0x30 != POLICY_SC[case["policy"]]:
            raise Rejected("policy")
        key = case["dk"] if dedicated else case["bk"] if sc & BROADCAST_BIT else case["ek"]
        iv = title + ic
        ak = case["ak"]
        if sc & 0x30 == 0x10:
            if len(body) < TAG_LEN:
                raise Rejected("short")
            apdu, tag = body[:-TAG_LEN], body[-TAG_LEN:]
            pyca_gcm_open(key, iv, bytes([sc]) + ak + apdu, b"", tag)
        elif sc & 0x30 == 0x20:
            apdu = pyca_ctr(key, iv, body)
        else:
            if len(body) < TAG_LEN:
                raise Rejected("short")
            apdu = pyca_gcm_open(key, iv, bytes([sc]) + ak, body[:-TAG_LEN], body[-TAG_LEN:])
        if tag_byte in GLO and apdu[:1] != bytes([GLO[tag_byte]]):
            raise Rejected("service tag does not match the APDU")
        if tag_byte in DED and apdu[:1] != bytes([DED[tag_byte]]):
            raise Rejected("service tag does not match the APDU")
        return apdu
    except InvalidTag:
        raise Rejected("InvalidTag") from None
    except IndexError:
        raise Rejected("truncated") from None
    except ValueError as e:
        raise Rejected(str(e)) from None


# ---------------------------------------------------------------------------
# gurux-dlms: second sender and receiver (it prints to stdout: silenced).

def gurux_protect(case):
    p = AesGcmParameter(outer_tag(case), bytearray(case["title"]),
                        bytearray(enc_key(case)), bytearray(case["ak"]))
    p.security = Security(POLICY_SC[case["policy"]])
    p.invocationCounter = case["ic"]
    p.broadcast = case["key"] == "broadcast"
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(GXDLMSChippering.encryptAesGcm(p, bytearray(case["apdu"])))


def gurux_unprotect(frame, case, preset_broadcast=False):
    """gurux's decryptAesGcm, given the key the outer tag selects (as its own
    GXDLMS does) and the broadcast key in the settings it consults.
    `preset_broadcast` sets the flag its parser fails to set (it assigns
    `p.broacast`): used only to confirm that defect, never to count a pass."""
    dedicated = frame[0] == GENERAL_DED or frame[0] in DED
    key = case["dk"] if dedicated else case["ek"]
    p = AesGcmParameter(0, bytearray(case["title"]), bytearray(key), bytearray(case["ak"]))
    p.settings = SimpleNamespace(cipher=SimpleNamespace(broadcastBlockCipherKey=bytearray(case["bk"])))
    p.broadcast = preset_broadcast
    with contextlib.redirect_stdout(io.StringIO()):
        return bytes(GXDLMSChippering.decryptAesGcm(None, p, GXByteBuffer(bytearray(frame))))


def gurux_hls5(title, ic, ek, ak, challenge):
    c = GXCiphering(bytearray(title))
    c.blockCipherKey = bytearray(ek)
    c.authenticationKey = bytearray(ak)
    c.invocationCounter = ic
    return bytes(c.generateGmacPassword(bytearray(challenge)))


# ---------------------------------------------------------------------------
# Our CLI.

class Cli:
    def __init__(self, path):
        self.path = path
        self.calls = 0

    def run(self, *args):
        self.calls += 1
        r = subprocess.run([self.path, *args], capture_output=True, text=True)
        return r.returncode, r.stdout.strip(), r.stderr.strip()

    def repro(self, *args):
        return " ".join(shlex.quote(a) for a in ["dlms-sec", *args])


def keyflags(case):
    return ["--ek", case["ek"].hex(), "--ak", case["ak"].hex(),
            "--bk", case["bk"].hex(), "--dk", case["dk"].hex()]


def protect_args(case):
    return ["protect", "--policy", case["policy"], "--system-title", case["title"].hex(),
            "--ic", str(case["ic"]), "--form", case["form"], "--key", case["key"],
            *keyflags(case), case["apdu"].hex()]


def unprotect_args(case, frame):
    return ["unprotect", "--system-title", case["title"].hex(), "--require", case["policy"],
            *keyflags(case), frame.hex()]


# ---------------------------------------------------------------------------
# Case generation.

def rand_bytes(rng, n):
    return bytes(rng.getrandbits(8) for _ in range(n))


def apdu_len(rng):
    r = rng.random()
    if r < 0.35:
        return rng.randint(1, 140)        # one-octet lengths and the 0x81 edge
    if r < 0.55:
        return rng.choice([106, 107, 108, 109, 110, 111, 112, 113, 114, 115,
                           226, 227, 228, 229, 230, 231, 232, 233, 234,
                           235, 236, 237, 238, 239, 240, 241, 242, 243, 244])
    if r < 0.7:
        return rng.randint(141, 300)
    return rng.randint(301, 4096)         # 0x82 lengths


def ic_value(rng):
    r = rng.random()
    if r < 0.05:
        return 0
    if r < 0.1:
        return 0xFFFFFFFE
    return rng.randint(0, 0xFFFFFFFE)


def gen_apdu_case(rng):
    form = rng.choice(["service", "service", "general-glo", "general-ded"])
    if form == "service":
        key = rng.choice(["unicast", "broadcast", "dedicated"])
    elif form == "general-glo":
        key = rng.choice(["unicast", "broadcast"])
    else:
        key = "dedicated"
    n = apdu_len(rng)
    if form == "service":
        first = rng.choice(sorted(SERVICES))
    else:
        # general forms carry any APDU, data-notification and access too
        first = rng.choice(sorted(SERVICES) + [0x0F, 0xD9, 0xDA])
    return {
        "ek": rand_bytes(rng, 16), "ak": rand_bytes(rng, 16),
        "bk": rand_bytes(rng, 16), "dk": rand_bytes(rng, 16),
        "title": rand_bytes(rng, 8), "ic": ic_value(rng),
        "policy": rng.choice(["auth", "enc", "auth-enc"]),
        "form": form, "key": key,
        "apdu": bytes([first]) + rand_bytes(rng, n - 1),
    }


def region(frame, bit):
    """Where a flipped bit landed, for the peer-defect notes."""
    byte = bit // 8
    pos = 1
    if byte == 0:
        return "outer tag"
    if frame[0] in (GENERAL_GLO, GENERAL_DED):
        if byte < 10:
            return "system title (or its length)"
        pos = 10
    _, body_start = read_axdr_len(frame, pos)
    if byte < body_start:
        return "content length"
    if byte == body_start:
        return "SC"
    if byte < body_start + 5:
        return "IC"
    if byte >= len(frame) - TAG_LEN and frame[body_start] & 0x10:
        return "auth tag"
    return "payload"


# ---------------------------------------------------------------------------
# Bookkeeping.

class Tally:
    def __init__(self):
        self.stats = defaultdict(Counter)
        self.ours_failed = []
        self.ours_passed = 0
        self.peer = defaultdict(Counter)      # defect -> Counter(detail)
        self.peer_examples = {}

    def ours(self, category, ok, detail=None):
        self.stats[category]["cases"] += 1
        if ok:
            self.stats[category]["equal"] += 1
            self.ours_passed += 1
        else:
            self.stats[category]["mismatches"] += 1
            self.ours_failed.append((category, detail))
            print("OUR MISMATCH [%s]: %s" % (category, detail), file=sys.stderr)

    def peer_check(self, category, ok, defect=None, detail="", example=None):
        self.stats[category]["cases"] += 1
        if ok:
            self.stats[category]["equal"] += 1
        else:
            self.stats[category]["peer defects"] += 1
            self.peer[defect][detail] += 1
            for k in (defect, (defect, detail)):
                old = self.peer_examples.get(k)
                if example and (old is None or len(example) < len(old)):
                    self.peer_examples[k] = example


def check_apdu_case(case, cli, rng, t):
    frame = pyca_protect(case)
    args = protect_args(case)
    rc, out, err = cli.run(*args)
    ours = bytes.fromhex(out) if rc == 0 else None
    t.ours("protect = pyca", ours == frame,
           "%s -> rc=%d %s %s; pyca %s" % (cli.repro(*args), rc, out, err, frame.hex().upper()))

    # Ours unprotects pyca's frame.
    uargs = unprotect_args(case, frame)
    rc, out, err = cli.run(*uargs)
    t.ours("unprotect(pyca frame)", rc == 0 and out == case["apdu"].hex().upper(),
           "%s -> rc=%d %s" % (cli.repro(*uargs), rc, err))

    # pyca's receiver accepts ours.
    if ours is not None:
        try:
            ok = pyca_unprotect(ours, case) == case["apdu"]
            why = "wrong plaintext"
        except Rejected as e:
            ok, why = False, str(e)
        t.ours("pyca accepts ours", ok, "%s: %s" % (cli.repro(*args), why))
    src = ours if ours is not None else frame

    # Tampering: one random bit, authenticated policies only (an
    # encryption-only frame has nothing that could detect it).
    if case["policy"] != "enc":
        bit = rng.randrange(len(src) * 8)
        bad = bytearray(src)
        bad[bit // 8] ^= 1 << (bit % 8)
        bad = bytes(bad)
        targs = unprotect_args(case, bad)
        rc, out, err = cli.run(*targs)
        t.ours("ours rejects tampered", rc in (1, 2),
               "%s -> rc=%d %s (bit %d)" % (cli.repro(*targs), rc, out, bit))
        t.stats["ours rejects tampered"]["exit %d" % rc] += 1
        try:
            pyca_unprotect(bad, case)
            ok = False
        except Rejected:
            ok = True
        t.ours("pyca rejects tampered", ok, "pyca accepted %s (bit %d)" % (bad.hex(), bit))
        where = region(src, bit)
        try:
            gurux_unprotect(bad, case)
            accepted = True
        except Exception:  # noqa: BLE001 - any refusal counts
            accepted = False
        sc = case_sc(case)
        if sc & 0x30 == 0x30:
            defect = "gurux: tag of an authenticated-encrypted APDU not verified on decrypt"
        else:
            defect = "gurux: accepts a tampered APDU (other)"
        t.peer_check("gurux rejects tampered", not accepted, defect,
                     "SC %02X, flipped bit in %s" % (sc, where),
                     example="%s (bit %d flipped in %s): %s" % (bad.hex().upper(), bit, where,
                                                               cli.repro(*targs)))

    # gurux as a sender: byte-equal to pyca's (and hence ours)?
    try:
        g = gurux_protect(case)
    except Exception as e:  # noqa: BLE001
        g = "raised %s: %s" % (type(e).__name__, e)
    t.peer_check("gurux protect = pyca", g == frame, "gurux protect differs from pyca",
                 "SC %02X form %s" % (case_sc(case), case["form"]),
                 example="gurux %s, pyca %s" % (g.hex().upper() if isinstance(g, bytes) else g,
                                                frame.hex().upper()))

    # gurux as a receiver of our frame.
    sc = case_sc(case)
    try:
        gp = gurux_unprotect(src, case)
        why = "wrong plaintext %s" % gp.hex().upper() if gp != case["apdu"] else ""
    except Exception as e:  # noqa: BLE001
        why = "raised %s: %s" % (type(e).__name__, e)
    if "cryptedData" in why:
        defect = "gurux: decryptAesGcm does not handle this ciphered tag (limitation)"
        detail = "tag %02X" % src[0]
    elif sc & BROADCAST_BIT and sc & 0x10:
        defect = "gurux: broadcast bit dropped on decrypt (authenticated broadcast APDUs refused)"
        try:
            confirmed = gurux_unprotect(src, case, preset_broadcast=True) == case["apdu"]
        except Exception:  # noqa: BLE001
            confirmed = False
        detail = "SC %02X: %s; %s" % (sc, why, "verifies once p.broadcast is preset"
                                      if confirmed else "still refused with p.broadcast preset")
    else:
        defect = "gurux: refuses or misreads a valid APDU (unexpected)"
        detail = "SC %02X tag %02X: %s" % (sc, src[0], why)
    t.peer_check("gurux accepts ours", not why, defect, detail,
                 example="%s -> %s; pyca and dlms-sec accept it: %s"
                 % (src.hex().upper(), why, cli.repro(*uargs)))


def check_wrap_case(rng, cli, t):
    kek, key = rand_bytes(rng, 16), rand_bytes(rng, 16)
    ref = aes_key_wrap(kek, key)
    args = ["wrap", "--kek", kek.hex(), key.hex()]
    rc, out, err = cli.run(*args)
    t.ours("wrap = pyca", rc == 0 and out == ref.hex().upper(),
           "%s -> rc=%d %s; pyca %s" % (cli.repro(*args), rc, out, ref.hex().upper()))
    uargs = ["unwrap", "--kek", kek.hex(), ref.hex()]
    rc, out, err = cli.run(*uargs)
    t.ours("unwrap(pyca)", rc == 0 and out == key.hex().upper(),
           "%s -> rc=%d %s" % (cli.repro(*uargs), rc, err))
    bit = rng.randrange(len(ref) * 8)
    bad = bytearray(ref)
    bad[bit // 8] ^= 1 << (bit % 8)
    bad = bytes(bad)
    targs = ["unwrap", "--kek", kek.hex(), bad.hex()]
    rc, out, err = cli.run(*targs)
    t.ours("unwrap rejects tampered", rc == 1, "%s -> rc=%d %s" % (cli.repro(*targs), rc, out))
    try:
        aes_key_unwrap(kek, bad)
        ok = False
    except InvalidUnwrap:
        ok = True
    t.ours("pyca unwrap rejects tampered", ok, "pyca unwrapped %s" % bad.hex())
    # Our wrap output, unwrapped by pyca.
    rc, out, err = cli.run(*args)
    try:
        ok = rc == 0 and aes_key_unwrap(kek, bytes.fromhex(out)) == key
    except (InvalidUnwrap, ValueError):
        ok = False
    t.ours("pyca unwraps ours", ok, "%s -> %s" % (cli.repro(*args), out))
    try:
        g = bytes(GXDLMSSecureClient.encrypt(bytearray(kek), bytearray(key)))
    except Exception as e:  # noqa: BLE001
        g = "raised %s" % e
    t.peer_check("gurux wrap = pyca", g == ref, "gurux wrap differs", "",
                 example="%s vs %s" % (g, ref.hex()))
    try:
        g = bytes(GXDLMSSecureClient.decrypt(bytearray(kek), bytearray(ref)))
        why = "" if g == key else "wrong key"
    except Exception as e:  # noqa: BLE001
        why = "raised %s: %s" % (type(e).__name__, e)
    t.peer_check("gurux unwrap(ours)", not why,
                 "gurux: GXDLMSSecureClient.decrypt (RFC 3394 unwrap) fails", why,
                 example="GXDLMSSecureClient.decrypt(kek=%s, %s): %s" % (kek.hex(), ref.hex(), why))


def check_hls5_case(rng, cli, t):
    title, ek, ak = rand_bytes(rng, 8), rand_bytes(rng, 16), rand_bytes(rng, 16)
    ic = ic_value(rng)
    challenge = rand_bytes(rng, rng.randint(8, 64))
    _, tag = pyca_gcm(ek, title + ic.to_bytes(4, "big"), b"\x10" + ak + challenge, b"")
    ref = b"\x10" + ic.to_bytes(4, "big") + tag
    args = ["hls5", "--system-title", title.hex(), "--ic", str(ic), "--ek", ek.hex(),
            "--ak", ak.hex(), challenge.hex()]
    rc, out, err = cli.run(*args)
    t.ours("hls5 = pyca", rc == 0 and out == ref.hex().upper(),
           "%s -> rc=%d %s; pyca %s" % (cli.repro(*args), rc, out, ref.hex().upper()))
    vargs = ["hls5-verify", "--system-title", title.hex(), "--ek", ek.hex(), "--ak", ak.hex(),
             "--challenge", challenge.hex(), ref.hex()]
    rc, out, err = cli.run(*vargs)
    t.ours("hls5-verify(pyca)", rc == 0, "%s -> rc=%d %s" % (cli.repro(*vargs), rc, err))
    bit = rng.randrange(len(ref) * 8)
    bad = bytearray(ref)
    bad[bit // 8] ^= 1 << (bit % 8)
    bad = bytes(bad)
    targs = vargs[:-1] + [bad.hex()]
    rc, out, err = cli.run(*targs)
    t.ours("hls5-verify rejects tampered", rc == 1, "%s -> rc=%d %s" % (cli.repro(*targs), rc, out))
    # pyca verifies f(challenge) with the IC it carries (12-octet tag).
    try:
        ok = bad[0] != 0x10
        if not ok:
            pyca_gcm_open(ek, title + bad[1:5], b"\x10" + ak + challenge, b"", bad[5:])
    except InvalidTag:
        ok = True
    t.ours("pyca rejects tampered f(challenge)", ok, "pyca accepted %s" % bad.hex())
    try:
        g = gurux_hls5(title, ic, ek, ak, challenge)
    except Exception as e:  # noqa: BLE001
        g = "raised %s" % e
    t.peer_check("gurux hls5 = pyca", g == ref, "gurux HLS-5 differs", "",
                 example="%s vs %s" % (g, ref.hex()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", type=int, default=200, help="APDU cases")
    ap.add_argument("--cli", default="target/release/dlms-sec")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    cli = Cli(a.cli)
    t = Tally()
    start = time.time()

    # Published anchors first: if these fail, nothing else means much.
    gb = {"ek": bytes(range(16)), "ak": bytes(range(0xD0, 0xE0)), "bk": bytes(16),
          "dk": bytes(16), "title": bytes.fromhex("4D4D4D0000BC614E"), "ic": 0x01234567,
          "policy": "auth-enc", "form": "service", "key": "unicast",
          "apdu": bytes.fromhex("C0010000080000010000FF0200")}
    assert pyca_protect(gb).hex().upper() == (
        "C81E3001234567411312FF935A47566827C467BC7D825C3BE4A77C3FCC056B6B"), "GB Table 40"
    assert aes_key_wrap(bytes(range(16)), bytes.fromhex("00112233445566778899AABBCCDDEEFF")).hex() \
        == "1fa68b0a8112b447aef34bd8fb5a7b829d3e862371d2cfe5", "RFC 3394 4.1"

    check_apdu_case(gb, cli, random.Random(0), t)
    for _ in range(a.cases):
        check_apdu_case(gen_apdu_case(rng), cli, rng, t)
    small = max(1, a.cases // 4)
    for _ in range(small):
        check_wrap_case(rng, cli, t)
    for _ in range(small):
        check_hls5_case(rng, cli, t)

    elapsed = time.time() - start
    print("interop: seed %d, %d APDU cases, %d key-wrap cases, %d HLS-5 cases, %d CLI runs, %.1f s"
          % (a.seed, a.cases + 1, small, small, cli.calls, elapsed))
    for category, c in t.stats.items():
        extra = "".join(", %s %d" % (k, v) for k, v in sorted(c.items()) if k.startswith("exit"))
        print("%-36s cases %5d, equal %5d, mismatches %d, peer defects recorded %d%s"
              % (category, c["cases"], c["equal"], c["mismatches"], c["peer defects"], extra))
    if t.peer:
        print("peer defects (gurux-dlms 1.0.203; pyca agreed with us in every one):")
        for defect, details in t.peer.items():
            print("  %s: %d" % (defect, sum(details.values())))
            for detail, n in sorted(details.items()):
                print("    %5d  %s" % (n, detail))
                if "(other)" in defect:
                    print("           e.g. %s" % t.peer_examples.get((defect, detail), ""))
            if "(other)" not in defect:
                print("    e.g. %s" % t.peer_examples.get(defect, ""))
    print("%d passed, %d failed" % (t.ours_passed, len(t.ours_failed)))
    return 1 if t.ours_failed else 0


if __name__ == "__main__":
    sys.exit(main())
