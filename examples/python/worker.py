#!/usr/bin/env python3
"""A ration worker in Python, with nothing but the standard library.

It registers, leases buckets, heartbeats them while it works, submits a
result per item and gives a bucket back when its work fails; it talks to
several nodes and moves on when one is down or has no leader. Run it
against a cluster (see README, "A worker in Python"):

    export RATION_WORKER_SECRET=my-worker-secret-1234
    python3 worker.py --addr 127.0.0.1:7070,127.0.0.1:7080,127.0.0.1:7090 \\
        --service dm --worker-id 42 --name alice

Replace dmcheck() with your own work: it gets a Bucket and returns a
result per item it finished ({"item": id, "verdict": ...}); items left out
go back to the pool.
"""

import argparse
import base64
import http.client
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.parse
import uuid
from datetime import datetime

# Reasons of an `unavailable` answer that mean the call was not applied.
NOT_APPLIED = {"NOT_LEADER", "NO_LEADER", "NOT_READY", "LEADER_UNREACHABLE",
               "SHUTTING_DOWN", "TRANSFER_FAILED", "STARTING",
               "UNREACHABLE"}  # this client's own: the connection was refused
# Reasons that say this worker no longer holds a bucket's lease.
LEASE_GONE = {"LEASE_LOST", "LEASE_EXPIRED", "NOT_HOLDER", "BUCKET_NOT_FOUND"}
# Reasons that say the worker must register (again) before it acquires.
NOT_REGISTERED = {"WORKER_INACTIVE", "NOT_REGISTERED", "WORKER_NOT_FOUND"}


class RationError(Exception):
    """A call that failed: ration's refusal (code, reason, message), or the
    last failure of a call that gave up retrying (code "unavailable")."""

    def __init__(self, code, reason, message, retry_after=None):
        super().__init__(f"{code}: {reason or '-'}: {message}")
        self.code, self.reason, self.message = code, reason, message
        self.retry_after = retry_after  # seconds, from a rate limit's answer


class Client:
    """Calls WorkerService on any of several nodes, Connect's JSON over HTTP.

    Every call is retried, on the next node, while it surely was not
    applied (connection refused, an `unavailable` reason in NOT_APPLIED),
    and also when it may have been (connection lost, timeout,
    OUTCOME_UNKNOWN) if it carries a request_id: the retry takes effect
    once and gets the first answer. A rate limit's answer is waited out.
    Each round of all nodes backs off with jitter; retry_for bounds it all.
    """

    def __init__(self, addrs, secret, call_timeout=10.0, retry_for=30.0, on_retry=None):
        self.urls = [a if "://" in a else "http://" + a for a in addrs]
        self.secret = secret
        self.call_timeout = call_timeout
        self.retry_for = retry_for
        self.on_retry = on_retry or (lambda **kw: None)
        self.pref = 0  # the node that answered last

    def call(self, method, body, retry_for=None, stop=None, timeout=None):
        """POSTs body to WorkerService/method and returns the answer as a
        dict. Raises RationError. A set `stop` event ends the retries;
        timeout bounds each try (default call_timeout)."""
        give_up = time.monotonic() + (self.retry_for if retry_for is None else retry_for)
        has_id = bool(body.get("request_id"))
        backoff, start, attempt = 0.025, self.pref, 0
        while True:
            i = (start + attempt) % len(self.urls)
            attempt += 1
            try:
                answer = self._once(self.urls[i], method, body, timeout or self.call_timeout)
                self.pref = i
                return answer
            except RationError as e:
                err = e
            if err.retry_after is not None:  # rate limited: wait as told, then the same node
                wait = err.retry_after * random.uniform(1, 1.125)
                self.on_retry(op=method, node=self.urls[i], code=err.code, reason=err.reason, wait=round(wait, 3))
                if pause(wait, give_up, stop):
                    raise err
                start -= 1
                continue
            if not safe_to_retry(err, has_id):
                raise err
            self.on_retry(op=method, node=self.urls[i], code=err.code, reason=err.reason, error=err.message)
            if attempt % len(self.urls):
                continue  # each node once at full speed, then back off
            if pause(backoff * random.uniform(1, 2), give_up, stop):
                raise err
            backoff = min(2 * backoff, 1.0)

    def _once(self, url, method, body, timeout):
        u = urllib.parse.urlsplit(url)
        conn = (http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection)(
            u.netloc, timeout=timeout)
        try:
            try:
                conn.connect()
            except OSError as e:  # nothing was sent
                raise RationError("unavailable", "UNREACHABLE", f"{u.netloc}: {e}") from None
            try:
                conn.request("POST", f"{u.path.rstrip('/')}/ration.v1.WorkerService/{method}", json.dumps(body),
                             {"Content-Type": "application/json", "Authorization": "Bearer " + self.secret})
                resp = conn.getresponse()
                raw = resp.read()
            except (http.client.HTTPException, OSError) as e:
                # Sent, but no whole answer came back: it may have been applied.
                raise RationError("unavailable", "CONNECTION_LOST", f"{u.netloc}: {e!r}") from None
        finally:
            conn.close()
        if resp.status // 100 != 2:
            raise http_error(resp.status, resp.headers, raw)
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            raise RationError("unknown", "BAD_ANSWER", f"{u.netloc}: not JSON: {raw[:100]!r}") from None


def safe_to_retry(e, has_request_id):
    """The README's rules: retry what surely was not applied; retry what may
    have been (OUTCOME_UNKNOWN, a lost connection, a timeout) only when the
    call carries a request_id, so that it takes effect once."""
    if e.code == "unavailable" and e.reason in NOT_APPLIED:
        return True
    return has_request_id and e.code in ("unavailable", "deadline_exceeded", "unknown", "aborted")


def pause(seconds, give_up, stop):
    """Sleeps, unless that ends past give_up; True when the caller should give up."""
    if time.monotonic() + seconds > give_up:
        return True
    if stop is not None:
        return stop.wait(seconds)
    time.sleep(seconds)
    return False


def http_error(status, headers, raw):
    """Turns a non-2xx answer into a RationError. The reason is in
    details[0].debug.reason; a server may omit debug, so the protobuf
    value (base64) is read too."""
    try:
        err = json.loads(raw)
    except ValueError:
        err = {}
    code = err.get("code") or {502: "unavailable", 503: "unavailable", 504: "unavailable",
                               429: "resource_exhausted"}.get(status, "unknown")
    reason = ""
    for d in err.get("details") or []:
        if d.get("type") == "ration.v1.ErrorDetail":
            reason = (d.get("debug") or {}).get("reason") or detail_reason(d.get("value") or "")
            break
    retry_after = None
    if code == "resource_exhausted":
        if headers.get("Ration-Retry-After-Ms", "").isdigit():
            retry_after = int(headers["Ration-Retry-After-Ms"]) / 1000
        elif headers.get("Retry-After", "").isdigit():
            retry_after = float(headers["Retry-After"])
    return RationError(code, reason, err.get("message") or f"HTTP {status}", retry_after)


def detail_reason(value):
    """Field 1 (reason) of an ErrorDetail in protobuf, base64 without padding."""
    try:
        b = base64.b64decode(value + "=" * (-len(value) % 4))
        if len(b) >= 2 and b[0] == 0x0A and b[1] < 0x80:
            return b[2:2 + b[1]].decode()
    except ValueError:
        pass
    return ""


def deadline_of(lease):
    """A lease's deadline as Unix seconds, or None."""
    d = (lease or {}).get("deadline")
    return datetime.fromisoformat(d.replace("Z", "+00:00")).timestamp() if d else None


class Bucket:
    """A leased bucket as process() sees it. `cancelled` is set when the
    lease is lost or the worker is stopping: stop early and return None."""

    def __init__(self, b):
        self.id = str(b.get("id") or 0)  # 64-bit numbers come as strings: keep them so
        self.service = b.get("service") or ""
        self.items = b.get("items") or []
        lease = b.get("lease") or {}
        self.epoch = str(lease.get("epoch") or 0)
        self.deadline = deadline_of(lease)
        self.cancelled = threading.Event()
        self.beating = True  # heartbeat it
        self.closing = False  # a submit or release is under way
        self.done = False  # its final event is logged


def dmcheck(bucket, work_time=0.0):
    """The example's work for kind dmcheck: DM for even ids, NON_DM for odd."""
    if bucket.cancelled.wait(work_time):
        return None
    out = []
    for item in bucket.items:
        verdict = "UNKNOWN" if not item.isdigit() else ("DM" if int(item) % 2 == 0 else "NON_DM")
        out.append({"item": item, "verdict": verdict})
    return out


class EventLog:
    """One JSON line per event, to a file if given, and a short line to stderr."""

    def __init__(self, path, worker_id):
        self.file = open(path, "a", encoding="utf-8") if path else None
        self.worker_id = worker_id
        self.lock = threading.Lock()

    def __call__(self, event, **fields):
        line = {"t": round(time.time(), 3), "worker": self.worker_id, "event": event, **fields}
        with self.lock:
            if self.file:
                self.file.write(json.dumps(line) + "\n")
                self.file.flush()
            print(event, " ".join(f"{k}={v}" for k, v in fields.items() if k != "items"), file=sys.stderr, flush=True)


class Worker:
    """The loop: register, acquire, heartbeat while working, submit, release."""

    def __init__(self, client, service, worker_id, name, process, log, max_buckets=1,
                 heartbeat_fraction=1 / 3, idle_max=5.0, stop_when_idle=None, submit_retry_for=60.0):
        self.client, self.service, self.worker_id, self.name = client, service, worker_id, name
        self.process, self.log, self.max_buckets = process, log, max_buckets
        self.heartbeat_fraction, self.idle_max = heartbeat_fraction, idle_max
        self.stop_when_idle, self.submit_retry_for = stop_when_idle, submit_retry_for
        self.stop = threading.Event()
        self.held = {}  # bucket id -> Bucket
        self.lock = threading.Lock()
        self.wake = threading.Event()  # wakes the heartbeat thread

    def run(self):
        """Works until stopped (0), idle for stop_when_idle (0), or refused
        for good (2)."""
        hb = threading.Thread(target=self._heartbeats, daemon=True)
        hb.start()
        try:
            return self._loop()
        finally:
            with self.lock:
                held = list(self.held.values())
            for b in held:
                self._release(b, "stopping")
            self.stop.set()
            self.wake.set()
            hb.join()

    def _loop(self):
        if not self._register():
            return 2 if not self.stop.is_set() else 0
        idle, empty_since = 0.25, None
        while not self.stop.is_set():
            try:
                got = self.client.call("Acquire", {"service": self.service, "worker_id": self.worker_id,
                                                   "max_buckets": self.max_buckets, "request_id": str(uuid.uuid4())},
                                       stop=self.stop)
            except RationError as e:
                empty_since = None
                if e.reason in NOT_REGISTERED:
                    if not self._register():
                        return 2 if not self.stop.is_set() else 0
                    continue
                if e.code in ("unauthenticated", "permission_denied"):
                    self.log("fatal", op="Acquire", code=e.code, reason=e.reason, error=e.message)
                    return 2
                # RESULTS_BACKLOG, LEASE_LIMIT, a revoked service, no leader
                # for retry_for: wait longer each time, and ask again.
                self.log("wait", op="Acquire", code=e.code, reason=e.reason, error=e.message)
                self.stop.wait(random.uniform(0.5, 1) * idle)
                idle = min(2 * idle, self.idle_max)
                continue
            buckets = [Bucket(b) for b in got.get("buckets") or []]
            if not buckets:  # no work: the same backoff
                now = time.monotonic()
                empty_since = empty_since or now
                if self.stop_when_idle is not None and now - empty_since >= self.stop_when_idle:
                    self.log("idle_exit", idle=round(now - empty_since, 3))
                    return 0
                self.stop.wait(random.uniform(0.5, 1) * idle)
                idle = min(2 * idle, self.idle_max)
                continue
            idle, empty_since = 0.25, None
            with self.lock:
                for b in buckets:
                    self.held[b.id] = b
                    self.log("acquired", bucket=b.id, epoch=b.epoch, items=b.items)
            self.wake.set()
            for b in buckets:
                if self.stop.is_set():
                    break
                self._work(b)
        return 0

    def _register(self):
        """Registers, waiting while the service or a leader is missing.
        False when refused for good or stopped."""
        while not self.stop.is_set():
            try:
                self.client.call("Register", {"service": self.service, "worker_id": self.worker_id,
                                              "name": self.name, "request_id": str(uuid.uuid4())}, stop=self.stop)
                self.log("registered", service=self.service)
                return True
            except RationError as e:
                if e.code in ("unauthenticated", "permission_denied", "invalid_argument") or e.reason == "WORKER_DEACTIVATED":
                    self.log("fatal", op="Register", code=e.code, reason=e.reason, error=e.message)
                    return False
                self.log("wait", op="Register", code=e.code, reason=e.reason, error=e.message)
                self.stop.wait(random.uniform(0.5, 1) * self.idle_max)
        return False

    def _work(self, b):
        try:
            results = self.process(b)
        except Exception as e:  # the work failed: give the bucket back
            self.log("process_error", bucket=b.id, error=repr(e))
            self._release(b, "process error")
            return
        if b.done:
            return  # lost while processing (already logged)
        if not results:
            self._release(b, "stopping" if self.stop.is_set() else "no results")
            return
        self._submit(b, results)

    def _submit(self, b, results):
        # One request id for every try: the submit takes effect once.
        rid = str(uuid.uuid4())
        b.closing = True
        try:
            got = self.client.call("Submit", {"worker_id": self.worker_id, "bucket_id": b.id, "epoch": b.epoch,
                                              "results": results, "request_id": rid},
                                   retry_for=self.submit_retry_for)
        except RationError as e:
            if e.reason in LEASE_GONE:
                self._finish(b, "lost", during="submit", reason=e.reason, error=e.message)
            elif e.code == "invalid_argument":  # results the kind refuses: give the items back
                self.log("submit_refused", bucket=b.id, reason=e.reason, error=e.message)
                self._release(b, "results refused")
            else:  # gave up: it may or may not have been applied
                self._finish(b, "submit_failed", request_id=rid, code=e.code, reason=e.reason, error=e.message)
            return
        self._finish(b, "submitted", accepted=int(got.get("accepted") or 0), requeued=int(got.get("requeued") or 0),
                     quarantined=int(got.get("quarantined") or 0), request_id=rid)

    def _release(self, b, why):
        if b.done:
            return
        b.closing = True
        try:
            got = self.client.call("Release", {"worker_id": self.worker_id, "bucket_id": b.id, "epoch": b.epoch,
                                               "request_id": str(uuid.uuid4())}, retry_for=10)
        except RationError as e:
            if e.reason in LEASE_GONE:
                self._finish(b, "lost", during="release", reason=e.reason, error=e.message)
            else:  # the lease will expire and its items go back
                self._finish(b, "release_failed", why=why, code=e.code, reason=e.reason, error=e.message)
            return
        self._finish(b, "released", why=why, requeued=int(got.get("requeued") or 0))

    def _finish(self, b, event, **fields):
        """Logs a bucket's one final event and stops its heartbeats."""
        with self.lock:
            if b.done:
                return
            b.done, b.beating = True, False
            b.cancelled.set()
            if self.held.get(b.id) is b:
                del self.held[b.id]
            self.log(event, bucket=b.id, epoch=b.epoch, **fields)

    def _heartbeats(self):
        """Extends the held leases when a fraction of the time left on the
        soonest one has passed, and gives up a lease reported lost."""
        while not self.stop.is_set():
            with self.lock:
                beats = [b for b in self.held.values() if b.beating]
            # Clocks are assumed roughly in step (the nodes keep theirs within 1s).
            left = min([b.deadline - time.time() for b in beats if b.deadline] or [5.0])
            wait = min(max(left * self.heartbeat_fraction, 0.2), 60.0)
            if self.wake.wait(wait):
                self.wake.clear()
                continue  # a new bucket: plan again
            with self.lock:
                beats = [b for b in self.held.values() if b.beating]
            if not beats:
                continue
            # Give up on a node that does not answer (a frozen leader) in
            # time to try another before the soonest lease ends.
            left = min([b.deadline - time.time() for b in beats if b.deadline] or [5.0])
            try:
                got = self.client.call("Heartbeat", {"worker_id": self.worker_id, "request_id": str(uuid.uuid4()),
                                                     "buckets": [{"id": b.id, "epoch": b.epoch} for b in beats]},
                                       retry_for=max(left / 2, 1.0), timeout=min(max(left / 4, 0.5), 10.0), stop=self.stop)
            except RationError as e:
                self.log("heartbeat_error", code=e.code, reason=e.reason, error=e.message)
                continue
            by_id = {b.id: b for b in beats}
            for o in got.get("buckets") or []:
                b = by_id.get(str(o.get("bucketId") or 0))
                reason = o.get("errorReason") or ""
                if b is None or b.done:
                    continue
                if not reason:
                    b.deadline = deadline_of(o.get("lease")) or b.deadline
                elif reason == "LEASE_EXPIRED" or b.closing:
                    # An expired lease can still be submitted until another
                    # worker takes the bucket, and a submit under way answers
                    # for itself: no more heartbeats, the submit decides.
                    b.beating = False
                    self.log("heartbeat_refused", bucket=b.id, epoch=b.epoch, reason=reason)
                else:
                    self._finish(b, "lost", during="heartbeat", reason=reason, error=o.get("errorMessage") or "")


def main(argv=None):
    p = argparse.ArgumentParser(description="A ration worker (kind dmcheck): DM for even ids, NON_DM for odd.")
    p.add_argument("--addr", default="127.0.0.1:7070", help="nodes' API addresses, comma-separated")
    p.add_argument("--service", default="dm")
    p.add_argument("--worker-id", required=True)
    p.add_argument("--name", default="", help="a name the owner sees")
    p.add_argument("--secret", default=os.environ.get("RATION_WORKER_SECRET", ""),
                   help="the worker's secret, 16 to 1024 bytes (default: env RATION_WORKER_SECRET)")
    p.add_argument("--max-buckets", type=int, default=1, help="buckets per Acquire")
    p.add_argument("--work-time", type=float, default=0.0, help="seconds the example's work takes per bucket")
    p.add_argument("--fail-first", type=int, default=0, help="fail the work of the first N buckets (tests Release)")
    p.add_argument("--idle-max", type=float, default=5.0, help="longest pause between empty Acquires, seconds")
    p.add_argument("--stop-when-idle", type=float, default=None, metavar="SECONDS",
                   help="exit 0 once every Acquire for this long found nothing")
    p.add_argument("--call-timeout", type=float, default=10.0, help="bound of one try of a call, seconds")
    p.add_argument("--retry-for", type=float, default=30.0, help="how long a call retries while no node serves it")
    p.add_argument("--submit-retry-for", type=float, default=60.0, help="the same for Submit")
    p.add_argument("--log", help="append one JSON line per event to this file")
    a = p.parse_args(argv)
    addrs = [s.strip() for s in a.addr.split(",") if s.strip()]
    if not addrs:
        p.error("--addr names no node")
    if not 16 <= len(a.secret.encode()) <= 1024:
        p.error("the worker secret (--secret or RATION_WORKER_SECRET) must be 16 to 1024 bytes")

    log = EventLog(a.log, a.worker_id)
    client = Client(addrs, a.secret, a.call_timeout, a.retry_for,
                    on_retry=lambda **kw: log("retry", **kw))
    to_fail = a.fail_first

    def process(bucket):
        nonlocal to_fail
        if to_fail > 0:
            to_fail -= 1
            raise RuntimeError("failing on purpose (--fail-first)")
        return dmcheck(bucket, a.work_time)

    w = Worker(client, a.service, a.worker_id, a.name, process, log, max_buckets=a.max_buckets,
               idle_max=a.idle_max, stop_when_idle=a.stop_when_idle, submit_retry_for=a.submit_retry_for)

    got = []  # signals received

    def on_signal(signum, _frame):
        # No locks here: the handler runs between two steps of the main thread.
        got.append(signal.Signals(signum).name)
        w.stop.set()
        for b in list(w.held.values()):
            b.cancelled.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = w.run()
    log("exit", exit_code=code, signals=got)
    return code


if __name__ == "__main__":
    sys.exit(main())
