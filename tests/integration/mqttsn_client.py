#!/usr/bin/env python3
"""mqttsn_client: a small MQTT-SN v1.2 test client (stdlib only) for psktun's integration tests.

Debian packages no MQTT-SN tools, so the integration tests speak the
protocol with this module. Use it as a module:

    from mqttsn_client import Client, connect, parse, CONNACK

    with Client(("127.0.0.1", 1884)) as c:          # binds an ephemeral port
        c.send(connect("meter-0001", duration=60))
        m = c.expect(CONNACK, timeout=5)             # raises TimeoutError
        assert m.return_code == 0

or from a shell, for a look by hand:

    mqttsn_client.py 127.0.0.1:1884 connect meter-0001
    mqttsn_client.py 127.0.0.1:1884 searchgw
    mqttsn_client.py --selftest

Builders return bytes; parse() returns a Message whose fields mirror the
C parser (plugins/mqttsn/parse.h) and raises ValueError on anything
malformed.
"""

import argparse
import socket
import struct
import sys
import time
from dataclasses import dataclass
from typing import Optional, Tuple, Union

# Message types, MQTT-SN v1.2 section 5.2.2.
ADVERTISE = 0x00
SEARCHGW = 0x01
GWINFO = 0x02
CONNECT = 0x04
CONNACK = 0x05
WILLTOPICREQ = 0x06
WILLTOPIC = 0x07
WILLMSGREQ = 0x08
WILLMSG = 0x09
REGISTER = 0x0A
REGACK = 0x0B
PUBLISH = 0x0C
PUBACK = 0x0D
PUBCOMP = 0x0E
PUBREC = 0x0F
PUBREL = 0x10
SUBSCRIBE = 0x12
SUBACK = 0x13
UNSUBSCRIBE = 0x14
UNSUBACK = 0x15
PINGREQ = 0x16
PINGRESP = 0x17
DISCONNECT = 0x18
WILLTOPICUPD = 0x1A
WILLTOPICRESP = 0x1B
WILLMSGUPD = 0x1C
WILLMSGRESP = 0x1D
ENCAPSULATED = 0xFE

NAMES = {v: k for k, v in dict(globals()).items()
         if k.isupper() and isinstance(v, int) and k not in ("NAMES",)}

# Flags, section 5.3.4.
FLAG_DUP = 0x80
FLAG_RETAIN = 0x10
FLAG_WILL = 0x08
FLAG_CLEAN = 0x04
TOPIC_NORMAL = 0
TOPIC_PREDEFINED = 1
TOPIC_SHORT = 2

# Return codes, section 5.3.10.
RC_ACCEPTED = 0x00
RC_CONGESTION = 0x01
RC_INVALID_TOPIC_ID = 0x02
RC_NOT_SUPPORTED = 0x03

CLIENTID_MAX = 23


def type_name(t: int) -> str:
    return NAMES.get(t, "0x%02x" % t)


# --- building ---------------------------------------------------------------

def message(msg_type: int, body: bytes = b"") -> bytes:
    """Length + MsgType + body; the 3-octet length from 256 octets on."""
    n = len(body) + 2
    if n <= 0xFF:
        return bytes([n, msg_type]) + body
    n = len(body) + 4
    if n > 0xFFFF:
        raise ValueError("message too long for MQTT-SN")
    return b"\x01" + struct.pack("!H", n) + bytes([msg_type]) + body


def flags(qos: int = 0, dup: bool = False, retain: bool = False, will: bool = False,
          clean: bool = False, topic_id_type: int = TOPIC_NORMAL) -> int:
    q = 3 if qos == -1 else qos
    if q not in (0, 1, 2, 3) or topic_id_type not in (0, 1, 2, 3):
        raise ValueError("bad QoS or topic id type")
    return ((FLAG_DUP if dup else 0) | q << 5 | (FLAG_RETAIN if retain else 0) |
            (FLAG_WILL if will else 0) | (FLAG_CLEAN if clean else 0) | topic_id_type)


def _b(s: Union[str, bytes]) -> bytes:
    return s.encode() if isinstance(s, str) else bytes(s)


def advertise(gw_id: int, duration: int) -> bytes:
    return message(ADVERTISE, struct.pack("!BH", gw_id, duration))


def searchgw(radius: int = 0) -> bytes:
    return message(SEARCHGW, bytes([radius]))


def gwinfo(gw_id: int, gw_add: bytes = b"") -> bytes:
    return message(GWINFO, bytes([gw_id]) + gw_add)


def connect(client_id: Union[str, bytes], duration: int = 60, clean: bool = True,
            will: bool = False) -> bytes:
    return message(CONNECT, struct.pack("!BBH", flags(clean=clean, will=will), 0x01, duration)
                   + _b(client_id))


def connack(return_code: int = RC_ACCEPTED) -> bytes:
    return message(CONNACK, bytes([return_code]))


def register(topic_name: Union[str, bytes], msg_id: int, topic_id: int = 0) -> bytes:
    return message(REGISTER, struct.pack("!HH", topic_id, msg_id) + _b(topic_name))


def regack(topic_id: int, msg_id: int, return_code: int = RC_ACCEPTED) -> bytes:
    return message(REGACK, struct.pack("!HHB", topic_id, msg_id, return_code))


def _topic_field(topic: Union[int, str, bytes], topic_id_type: Optional[int]) -> Tuple[int, bytes]:
    """A topic as PUBLISH/SUBSCRIBE carry it: an int is a topic id (normal
    unless told), a 2-character str a short name, a longer str a name."""
    if isinstance(topic, int):
        return (TOPIC_NORMAL if topic_id_type is None else topic_id_type,
                struct.pack("!H", topic))
    raw = _b(topic)
    if topic_id_type is None:
        topic_id_type = TOPIC_SHORT if len(raw) == 2 else TOPIC_NORMAL
    return topic_id_type, raw


def publish(topic: Union[int, str, bytes], data: Union[str, bytes], msg_id: int = 0,
            qos: int = 0, retain: bool = False, dup: bool = False,
            topic_id_type: Optional[int] = None) -> bytes:
    """topic: a registered or predefined id (int), or a short name (2 chars)."""
    tt, raw = _topic_field(topic, topic_id_type)
    if len(raw) != 2:
        raise ValueError("PUBLISH carries a 2-octet topic id or short name")
    return message(PUBLISH, bytes([flags(qos, dup, retain, topic_id_type=tt)]) + raw
                   + struct.pack("!H", msg_id) + _b(data))


def puback(topic_id: int, msg_id: int, return_code: int = RC_ACCEPTED) -> bytes:
    return message(PUBACK, struct.pack("!HHB", topic_id, msg_id, return_code))


def pubrec(msg_id: int) -> bytes:
    return message(PUBREC, struct.pack("!H", msg_id))


def pubrel(msg_id: int) -> bytes:
    return message(PUBREL, struct.pack("!H", msg_id))


def pubcomp(msg_id: int) -> bytes:
    return message(PUBCOMP, struct.pack("!H", msg_id))


def subscribe(topic: Union[int, str, bytes], msg_id: int, qos: int = 0, dup: bool = False,
              topic_id_type: Optional[int] = None) -> bytes:
    """topic: a name (str), a short name (2 chars), or a predefined id (int)."""
    if isinstance(topic, int) and topic_id_type is None:
        topic_id_type = TOPIC_PREDEFINED
    tt, raw = _topic_field(topic, topic_id_type)
    return message(SUBSCRIBE, bytes([flags(qos, dup, topic_id_type=tt)])
                   + struct.pack("!H", msg_id) + raw)


def suback(topic_id: int, msg_id: int, qos: int = 0, return_code: int = RC_ACCEPTED) -> bytes:
    return message(SUBACK, bytes([flags(qos)]) + struct.pack("!HHB", topic_id, msg_id, return_code))


def pingreq(client_id: Union[str, bytes, None] = None) -> bytes:
    return message(PINGREQ, _b(client_id) if client_id else b"")


def pingresp() -> bytes:
    return message(PINGRESP)


def disconnect(duration: Optional[int] = None) -> bytes:
    return message(DISCONNECT, b"" if duration is None else struct.pack("!H", duration))


def encapsulate(node_id: Union[str, bytes], msg: bytes, radius: int = 0) -> bytes:
    """Forwarder Encapsulation, section 5.5: a one-octet Length over
    Length, MsgType, Ctrl and the Wireless Node Id, then the message."""
    nid = _b(node_id)
    if not 1 <= len(nid) <= 252 or not 0 <= radius <= 3:
        raise ValueError("node id of 1..252 octets, radius 0..3")
    return bytes([3 + len(nid), ENCAPSULATED, radius]) + nid + msg


# --- parsing ----------------------------------------------------------------

@dataclass
class Message:
    type: int
    raw: bytes
    flags: Optional[int] = None
    gw_id: Optional[int] = None
    radius: Optional[int] = None
    duration: Optional[int] = None
    return_code: Optional[int] = None
    topic_id: Optional[int] = None
    msg_id: Optional[int] = None
    client_id: Optional[bytes] = None
    topic: Optional[bytes] = None
    data: Optional[bytes] = None
    node_id: Optional[bytes] = None
    inner: Optional["Message"] = None

    @property
    def name(self) -> str:
        return type_name(self.type)

    @property
    def qos(self) -> Optional[int]:
        if self.flags is None:
            return None
        q = (self.flags >> 5) & 3
        return -1 if q == 3 else q

    @property
    def topic_id_type(self) -> Optional[int]:
        return None if self.flags is None else self.flags & 3

    def __str__(self) -> str:
        fields = ", ".join("%s=%r" % (k, v) for k, v in vars(self).items()
                           if v is not None and k not in ("type", "raw"))
        return "%s(%s)" % (self.name, fields)


def _need(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(what)


def parse(buf: bytes) -> Message:
    """Parse one datagram as the C parser does; ValueError if malformed."""
    buf = bytes(buf)
    _need(len(buf) >= 2, "shorter than a header")
    if buf[0] != 0x01 and buf[1] == ENCAPSULATED:
        hl = buf[0]
        _need(4 <= hl <= len(buf), "bad encapsulation length")
        inner = parse(buf[hl:])
        _need(inner.type != ENCAPSULATED, "nested encapsulation")
        return Message(ENCAPSULATED, buf, radius=buf[2] & 3, node_id=buf[3:hl], inner=inner)
    if buf[0] == 0x01:
        _need(len(buf) >= 4, "3-octet length cut")
        n, hl = struct.unpack("!H", buf[1:3])[0], 4
    else:
        n, hl = buf[0], 2
    _need(n == len(buf), "length field %d, datagram %d" % (n, len(buf)))
    t, b = buf[hl - 1], buf[hl:]
    m = Message(t, buf)

    def exact(k: int) -> None:
        _need(len(b) == k, "%s: %d octets of body, want %d" % (type_name(t), len(b), k))

    if t == ADVERTISE:
        exact(3)
        m.gw_id, m.duration = struct.unpack("!BH", b)
    elif t == SEARCHGW:
        exact(1)
        m.radius = b[0]
    elif t == GWINFO:
        _need(len(b) >= 1, "GWINFO cut")
        m.gw_id, m.data = b[0], b[1:]
    elif t == CONNECT:
        _need(5 <= len(b) <= 4 + CLIENTID_MAX, "CONNECT ClientId length")
        m.flags, pid, m.duration = struct.unpack("!BBH", b[:4])
        _need(pid == 0x01, "CONNECT ProtocolId")
        m.client_id = b[4:]
    elif t in (CONNACK, WILLTOPICRESP, WILLMSGRESP):
        exact(1)
        m.return_code = b[0]
    elif t in (WILLTOPICREQ, WILLMSGREQ, PINGRESP):
        exact(0)
    elif t in (WILLTOPIC, WILLTOPICUPD):
        _need(len(b) == 0 or len(b) >= 2, "%s cut" % type_name(t))
        if b:
            m.flags, m.topic = b[0], b[1:]
            _need(m.qos != -1, "Will QoS -1")
    elif t in (WILLMSG, WILLMSGUPD):
        m.data = b
    elif t == REGISTER:
        _need(len(b) >= 5, "REGISTER cut")
        m.topic_id, m.msg_id = struct.unpack("!HH", b[:4])
        m.topic = b[4:]
    elif t in (REGACK, PUBACK):
        exact(5)
        m.topic_id, m.msg_id, m.return_code = struct.unpack("!HHB", b)
    elif t == PUBLISH:
        _need(len(b) >= 5, "PUBLISH cut")
        m.flags, m.topic_id, m.msg_id = struct.unpack("!BHH", b[:5])
        _need(m.topic_id_type != 3, "topic id type 3")
        _need(m.qos != -1 or m.topic_id_type != TOPIC_NORMAL, "QoS -1 with a normal topic id")
        m.data = b[5:]
    elif t in (PUBCOMP, PUBREC, PUBREL, UNSUBACK):
        exact(2)
        m.msg_id = struct.unpack("!H", b)[0]
    elif t in (SUBSCRIBE, UNSUBSCRIBE):
        _need(len(b) >= 4, "%s cut" % type_name(t))
        m.flags, m.msg_id = struct.unpack("!BH", b[:3])
        _need(m.topic_id_type != 3, "topic id type 3")
        _need(t != SUBSCRIBE or m.qos != -1, "SUBSCRIBE QoS -1")
        m.topic = b[3:]
        if m.topic_id_type != TOPIC_NORMAL:
            _need(len(m.topic) == 2, "topic id of 2 octets")
            m.topic_id = struct.unpack("!H", m.topic)[0]
    elif t == SUBACK:
        exact(6)
        m.flags, m.topic_id, m.msg_id, m.return_code = struct.unpack("!BHHB", b)
        _need(m.qos != -1, "SUBACK QoS -1")
    elif t == PINGREQ:
        _need(len(b) <= CLIENTID_MAX, "PINGREQ ClientId length")
        m.client_id = b or None
    elif t == DISCONNECT:
        _need(len(b) in (0, 2), "DISCONNECT duration")
        if b:
            m.duration = struct.unpack("!H", b)[0]
    else:
        raise ValueError("reserved message type 0x%02x" % t)
    return m


# --- talking ----------------------------------------------------------------

Addr = Tuple[str, int]


class Client:
    """One UDP socket talking MQTT-SN to `server` (default destination).

    Pass `sock` to send from a socket the test already bound (e.g. a given
    source port the gateway's `meters` table names); otherwise an
    ephemeral port on `bind` (default: loopback of the server's family).
    """

    def __init__(self, server: Optional[Addr] = None, sock: Optional[socket.socket] = None,
                 bind: Optional[Addr] = None):
        self.server = server
        if sock is None:
            family = socket.AF_INET6 if server and ":" in server[0] else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.bind(bind or (("::1" if family == socket.AF_INET6 else "127.0.0.1"), 0))
        self.sock = sock
        self.received = []      # (Message or None, raw, addr), everything seen

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    @property
    def address(self) -> Addr:
        return self.sock.getsockname()[:2]

    def send(self, msg: bytes, to: Optional[Addr] = None) -> None:
        dest = to or self.server
        if dest is None:
            raise ValueError("no destination")
        self.sock.sendto(msg, dest)

    def recv_raw(self, timeout: float) -> Optional[Tuple[bytes, Addr]]:
        """One datagram, or None after `timeout` seconds."""
        self.sock.settimeout(max(timeout, 0.0) or 1e-6)
        try:
            data, addr = self.sock.recvfrom(65535)
        except socket.timeout:
            return None
        return data, addr[:2]

    def recv(self, timeout: float) -> Optional[Message]:
        """One parsed message (malformed ones raise ValueError), or None."""
        got = self.recv_raw(timeout)
        if got is None:
            return None
        data, addr = got
        try:
            m = parse(data)
        except ValueError:
            self.received.append((None, data, addr))
            raise
        self.received.append((m, data, addr))
        return m

    def expect(self, msg_type: int, timeout: float = 5.0) -> Message:
        """Wait for a message of msg_type, skipping others; TimeoutError if
        none arrives in `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            m = self.recv(left)
            if m is not None and m.type == msg_type:
                return m
        raise TimeoutError("no %s within %.1f s" % (type_name(msg_type), timeout))

    def expect_nothing(self, timeout: float) -> None:
        """Assert that no datagram arrives within `timeout` seconds."""
        got = self.recv_raw(timeout)
        if got is not None:
            raise AssertionError("unexpected datagram %r from %r" % got)

    def request(self, msg: bytes, answer: int, timeout: float = 5.0,
                to: Optional[Addr] = None) -> Message:
        self.send(msg, to)
        return self.expect(answer, timeout)

    # The conversations integration tests need most.
    def connect(self, client_id: Union[str, bytes], duration: int = 60,
                timeout: float = 5.0) -> int:
        """CONNECT and return the CONNACK's return code."""
        return self.request(connect(client_id, duration), CONNACK, timeout).return_code

    def searchgw(self, radius: int = 0, timeout: float = 5.0, to: Optional[Addr] = None) -> int:
        """SEARCHGW and return the answering GWINFO's gateway id."""
        return self.request(searchgw(radius), GWINFO, timeout, to).gw_id

    def ping(self, client_id=None, timeout: float = 5.0) -> None:
        self.request(pingreq(client_id), PINGRESP, timeout)


class Backend:
    """A fake UDP backend (a stand-in for an MQTT-SN gateway): records what
    reaches it and can answer; the test reads `self.received`."""

    def __init__(self, bind: Addr = ("127.0.0.1", 0)):
        self.client = Client(bind=bind)

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.client.close()

    @property
    def address(self) -> Addr:
        return self.client.address

    def recv(self, timeout: float = 5.0) -> Tuple[Message, Addr]:
        got = self.client.recv_raw(timeout)
        if got is None:
            raise TimeoutError("nothing reached the backend within %.1f s" % timeout)
        return parse(got[0]), got[1]

    def reply(self, msg: bytes, to: Addr) -> None:
        self.client.send(msg, to)


# --- self-test and command line -----------------------------------------------

def selftest() -> None:
    """The spec vectors the C unit tests use, built and parsed back."""
    m1 = b"meter-0001"
    cases = [
        (advertise(1, 900), bytes([0x05, 0x00, 0x01, 0x03, 0x84])),
        (searchgw(0), bytes([0x03, 0x01, 0x00])),
        (gwinfo(1), bytes([0x03, 0x02, 0x01])),
        (connect(m1, 60), bytes([0x10, 0x04, 0x04, 0x01, 0x00, 0x3C]) + m1),
        (connack(3), bytes([0x03, 0x05, 0x03])),
        (publish(5, b"21.5", msg_id=2, qos=1), bytes([0x0B, 0x0C, 0x20, 0x00, 0x05, 0x00, 0x02]) + b"21.5"),
        (publish(7, b"", qos=-1, topic_id_type=TOPIC_PREDEFINED), bytes([0x07, 0x0C, 0x61, 0, 7, 0, 0])),
        (puback(5, 2), bytes([0x07, 0x0D, 0x00, 0x05, 0x00, 0x02, 0x00])),
        (subscribe("a/b", 4, qos=1), bytes([0x08, 0x12, 0x20, 0x00, 0x04]) + b"a/b"),
        (subscribe(7, 4), bytes([0x07, 0x12, 0x01, 0x00, 0x04, 0x00, 0x07])),
        (subscribe("ab", 4), bytes([0x07, 0x12, 0x02, 0x00, 0x04]) + b"ab"),
        (suback(5, 4, qos=1), bytes([0x08, 0x13, 0x20, 0x00, 0x05, 0x00, 0x04, 0x00])),
        (pingreq(), bytes([0x02, 0x16])),
        (pingreq(m1), bytes([0x0C, 0x16]) + m1),
        (pingresp(), bytes([0x02, 0x17])),
        (disconnect(), bytes([0x02, 0x18])),
        (disconnect(3600), bytes([0x04, 0x18, 0x0E, 0x10])),
        (encapsulate(m1, pingreq()), bytes([0x0D, 0xFE, 0x00]) + m1 + bytes([0x02, 0x16])),
    ]
    for built, want in cases:
        assert built == want, (built.hex(), want.hex())
        assert parse(built).raw == want
    long = publish(5, b"p" * 300)
    assert long[:4] == bytes([0x01, 0x01, 0x35, 0x0C]) and parse(long).data == b"p" * 300
    e = parse(encapsulate("meter-0002", connack(0)))
    assert e.node_id == b"meter-0002" and e.inner.type == CONNACK
    for bad in (b"", b"\x02", b"\x03\x16", b"\x06\x04\x04\x01\x00\x3c", b"\x02\x03",
                b"\x07\x0c\x60\x00\x05\x00\x00", b"\x04\xfe\x00n\x03\x16"):
        try:
            parse(bad)
        except ValueError:
            continue
        raise AssertionError("parsed malformed %s" % bad.hex())
    print("selftest OK")


def _addr(s: str) -> Addr:
    host, _, port = s.rpartition(":")
    return host.strip("[]"), int(port)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Send one MQTT-SN message and print the answer.")
    ap.add_argument("--selftest", action="store_true", help="check the builders and parser")
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--node-id", help="wrap in Forwarder Encapsulation with this node id")
    ap.add_argument("server", nargs="?", help="host:port")
    ap.add_argument("what", nargs="?", choices=["searchgw", "connect", "pingreq", "disconnect",
                                                "publish", "subscribe"])
    ap.add_argument("args", nargs="*", help="connect CLIENTID [DURATION] | pingreq [CLIENTID] | "
                    "disconnect [DURATION] | publish TOPICID DATA [QOS] | subscribe TOPIC MSGID")
    a = ap.parse_args(argv)
    if a.selftest:
        selftest()
        return 0
    if not a.server or not a.what:
        ap.error("server and message wanted")
    x = a.args
    msg = {
        "searchgw": lambda: searchgw(),
        "connect": lambda: connect(x[0], int(x[1]) if len(x) > 1 else 60),
        "pingreq": lambda: pingreq(x[0] if x else None),
        "disconnect": lambda: disconnect(int(x[0]) if x else None),
        "publish": lambda: publish(int(x[0]), x[1], msg_id=1, qos=int(x[2]) if len(x) > 2 else 0),
        "subscribe": lambda: subscribe(x[0], int(x[1])),
    }[a.what]()
    if a.node_id:
        msg = encapsulate(a.node_id, msg)
    with Client(_addr(a.server)) as c:
        c.send(msg)
        print("sent", parse(msg), msg.hex())
        got = c.recv_raw(a.timeout)
        if got is None:
            print("no answer")
            return 1
        try:
            print("got", parse(got[0]), got[0].hex(), "from %s:%d" % got[1])
        except ValueError as e:
            print("got malformed", got[0].hex(), e)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
