#!/usr/bin/env python3
"""loadgen -- Postern's bounded SMTP/POP3 load generator (Python >= 3.11, stdlib only).

One scenario per run; the result is one JSON object on stdout (progress on stderr).
Every run is bounded by a count (-n) and by wall-clock time (-d), every session by
--timeout, so a run always ends by itself. All traffic goes to --host (loopback); client
sockets are bound round-robin to --src addresses (default 127.0.1.1-127.0.1.254) so the
server sees many "remote" clients, not one.

Scenarios (one operation = one whole session; latency = connect() .. reply to QUIT):
  s1     MX inbound: EHLO, MAIL, RCPT (one local user), DATA --size bytes, QUIT; plain
  s2     submission: EHLO, STARTTLS (or implicit TLS), EHLO, AUTH PLAIN, MAIL FROM = own
         address, RCPT rcpt<N>@--rcpt-domain, DATA --size bytes, QUIT
  s2r    S2 as a returning mail program: the same session, but every user's client resumes
         the TLS session (ticket) of its previous connection, and an unmeasured warm-up pass
         first logs in every user once (auth cache warm, tickets issued), as in steady
         state; reports tls_resumed_ratio (resumed / TLS connections in the measured window)
         and, with --server-log, the server's auth cache hits / misses in that window
  s3     POP3: [STLS], USER, PASS, STAT, UIDL, RETR every message, DELE every message, QUIT;
         one session per mailbox
  s4     auth storm: EHLO, STARTTLS, EHLO, AUTH PLAIN, QUIT; the odd-numbered workers are
         attackers that always send a wrong password from their own source pool (with -c 1
         every second attempt is an attack); good and bad are counted separately
  s5     idle sessions: open connections (--rate per second, --inflight at a time) until
         --max or the first one without a 220 greeting within --greet-timeout; hold
         --hold seconds; sample server memory; QUIT all
  fill   S3 preparation: empty the mailboxes over POP3, send --per-user messages to each
         over plain SMTP (--port), wait until POP3 STAT shows them
  login  login cost: EHLO, [STARTTLS, EHLO], AUTH PLAIN, QUIT with ONE credential
         (--user-index) every time -> with an auth cache every login after the first is a hit
  hello  baseline for `login`: EHLO, [STARTTLS, EHLO], QUIT (no AUTH)
  s1p    S1' (cross-check with a C client): Postfix's smtp-source -c -s C -m N -l --size, all
         to one local user (the first bench user after --first), from 127.0.0.1, stopped after
         -d seconds if N is not reached (completed DATAs counted with -c); wall-clock msg/s
         only (no latencies); also the load average and block-device cache flushes
         (/proc/diskstats, whole machine) per message

Server accounting (Linux /proc): --pid / --pidfile name the server's root process(es); the
whole process tree is summed. CPU = utime+stime (+cutime+cstime of reaped children) of all
threads, from just before the load until the server is idle again (so deferred work such as
relaying queued mail is included). Memory = sum of Pss (and Rss) from /proc/PID/smaps_rollup.
"""
import argparse
import asyncio
import base64
import ipaddress
import json
import os
import random
import resource
import shutil
import ssl
import statistics
import sys
import contextvars
import time
from collections import Counter

HZ = os.sysconf("SC_CLK_TCK")


def say(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- accounting
def proc_stat(pid):
    """(ppid, cpu ticks incl. reaped children) of a process, or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("latin-1")
    except OSError:
        return None
    f = raw[raw.rindex(")") + 2:].split()
    # f[1]=ppid, f[11]=utime f[12]=stime f[13]=cutime f[14]=cstime (man 5 proc, minus 2)
    return int(f[1]), int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])


class ServerTree:
    """The server under test: root PIDs and every descendant process."""

    def __init__(self, pids, pidfiles):
        roots = set(pids)
        for pf in pidfiles:
            try:
                with open(pf) as f:
                    roots.add(int(f.read().split()[0]))
            except (OSError, ValueError, IndexError):
                say(f"loadgen: cannot read pid file {pf}")
        self.roots = {p for p in roots if os.path.isdir(f"/proc/{p}")}

    def __bool__(self):
        return bool(self.roots)

    def members(self):
        info = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                st = proc_stat(d)
                if st:
                    info[int(d)] = st
        children = {}
        for pid, (ppid, _) in info.items():
            children.setdefault(ppid, []).append(pid)
        out, todo = {}, [p for p in self.roots if p in info]
        while todo:
            p = todo.pop()
            if p not in out:
                out[p] = info[p][1]
                todo.extend(children.get(p, ()))
        return out

    def cpu_s(self):
        return sum(self.members().values()) / HZ if self.roots else 0.0

    def memory(self):
        pss = rss = nproc = nthreads = 0
        for pid in self.members():
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("Pss:"):
                            pss += int(line.split()[1])
                        elif line.startswith("Rss:"):
                            rss += int(line.split()[1])
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("Threads:"):
                            nthreads += int(line.split()[1])
                nproc += 1
            except OSError:
                pass
        return {"pss_kib": pss, "rss_kib": rss, "procs": nproc, "threads": nthreads}

    async def wait_idle(self, max_s, cores=0.03, step=0.5):
        """Until the tree used < `cores` CPU in two consecutive `step`s (at most max_s)."""
        t0 = time.monotonic()
        if not self.roots:
            return 0.0
        last, quiet = self.cpu_s(), 0
        while time.monotonic() - t0 < max_s and quiet < 2:
            await asyncio.sleep(step)
            now = self.cpu_s()
            quiet = quiet + 1 if (now - last) / step < cores else 0
            last = now
        return time.monotonic() - t0


def machine_busy_s():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / HZ


def own_cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ---------------------------------------------------------------------------- helpers
def address_pool(spec):
    if not spec:
        return [None]
    out = []
    for part in (p.strip() for p in spec.split(",")):
        if "-" in part:
            lo, hi = (int(ipaddress.IPv4Address(x)) for x in part.split("-", 1))
            out.extend(str(ipaddress.IPv4Address(i)) for i in range(lo, hi + 1))
        elif "/" in part:
            out.extend(str(h) for h in ipaddress.ip_network(part, strict=False).hosts())
        elif part:
            out.append(part)
    return out or [None]


class RoundRobin:
    def __init__(self, items):
        self.items, self.n = list(items), 0

    def __call__(self):
        item = self.items[self.n % len(self.items)]
        self.n += 1
        return item


def read_users(path, first, limit):
    users = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2 and parts[0].startswith("bench"):
                users.append((parts[0], parts[1]))
    users.sort(key=lambda u: int(u[0][5:u[0].index("@")]))
    users = users[first:first + limit] if limit else users[first:]
    if not users:
        sys.exit(f"loadgen: no bench users in {path} (first={first}, limit={limit})")
    return users


FILLER = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor 0123\r\n"


def message(size, sender, rcpt, n):
    head = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: postern bench {n}\r\n"
            f"Date: {time.strftime('%a, %d %b %Y %H:%M:%S +0000', time.gmtime())}\r\n"
            f"Message-ID: <{n}.{random.getrandbits(48):x}@bench.postern.test>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    left = max(2, size - len(head))
    body = (FILLER * (left // len(FILLER) + 1))[:left - 2] + b"\r\n"
    return head + body


def percentile(sorted_v, q):
    if not sorted_v:
        return None
    i = min(len(sorted_v) - 1, max(0, int(q / 100.0 * len(sorted_v) + 0.5) - 1))
    return sorted_v[i]


def latency_fields(values, prefix="lat"):
    v = sorted(values)
    ms = (lambda x: None if x is None else round(x * 1000, 2))
    return {f"{prefix}_n": len(v), f"{prefix}_p50_ms": ms(percentile(v, 50)),
            f"{prefix}_p99_ms": ms(percentile(v, 99)),
            f"{prefix}_mean_ms": ms(statistics.fmean(v) if v else None)}


class Fail(Exception):
    def __init__(self, step, detail):
        super().__init__(f"{step}: {detail}")
        self.step = step


# ---------------------------------------------------------------------------- wire
# s2r: the TLS session to resume on the next handshake of the current task. asyncio's
# start_tls() has no session parameter, but it wraps the connection with
# SSLContext.wrap_bio() synchronously inside the call, in the calling task's context.
RESUME = contextvars.ContextVar("RESUME", default=None)


class ResumingContext(ssl.SSLContext):
    """An SSLContext whose client connections offer the session in RESUME (ticket / ID)."""

    def wrap_bio(self, incoming, outgoing, server_side=False, server_hostname=None, session=None):
        return super().wrap_bio(incoming, outgoing, server_side=server_side, server_hostname=server_hostname,
                                session=session or RESUME.get())


def resuming_context():
    ctx = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Conn:
    """A client connection with line-oriented helpers for SMTP and POP3."""

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer

    @classmethod
    async def open(cls, opt, port, src, implicit):
        kw = {"limit": 1 << 20}
        if src:
            kw["local_addr"] = (src, 0)
        if implicit:
            kw["ssl"], kw["server_hostname"] = opt.sslctx, None
        r, w = await asyncio.open_connection(opt.host, port, **kw)
        return cls(r, w)

    async def close(self, abort=False):
        try:
            if abort:
                self.w.transport.abort()
            else:
                self.w.close()
                await asyncio.wait_for(self.w.wait_closed(), 2)
        except Exception:  # noqa: BLE001
            pass

    async def tls(self, opt, ctx=None):
        await self.w.start_tls(ctx or opt.sslctx, server_hostname=None)

    def ssl_object(self):
        return self.w.get_extra_info("ssl_object")

    def send(self, data):
        self.w.write(data)

    # SMTP
    async def reply(self, step, want=None):
        line = b""
        while True:
            line = await self.r.readline()
            if not line:
                raise Fail(step, "connection closed")
            if line[3:4] != b"-":
                break
        try:
            code = int(line[:3])
        except ValueError:
            raise Fail(step, f"bad reply {line[:60]!r}") from None
        if want is not None and code // 100 != want:
            raise Fail(step, line.decode("latin-1").strip()[:80])
        return code

    async def cmd(self, data, step, want):
        self.send(data)
        return await self.reply(step, want)

    # POP3
    async def ok(self, step):
        line = await self.r.readline()
        if not line.startswith(b"+OK"):
            raise Fail(step, (line.decode("latin-1").strip() or "connection closed")[:80])
        return line

    async def pop(self, data, step):
        self.send(data)
        return await self.ok(step)

    async def multiline(self, step):
        """Status line, then the dot-terminated body (returned without the final '.')."""
        await self.ok(step)
        buf = bytearray()
        while True:
            buf += await self.r.readuntil(b".\r\n")
            if len(buf) == 3 or buf.endswith(b"\r\n.\r\n"):
                return bytes(buf[:-3])


def plain(user, pw):
    return b"AUTH PLAIN " + base64.b64encode(f"\0{user}\0{pw}".encode()) + b"\r\n"


async def smtp_hello(opt, c, tls, ctx=None):
    await c.reply("greeting", 2)
    await c.cmd(opt.ehlo, "ehlo", 2)
    if tls == "starttls":
        await c.cmd(b"STARTTLS\r\n", "starttls", 2)
        await c.tls(opt, ctx)
        await c.cmd(opt.ehlo, "ehlo-tls", 2)


async def smtp_quit(c):
    c.send(b"QUIT\r\n")
    try:
        await c.reply("quit")
    except Fail:
        pass


async def smtp_send(opt, port, src, tls, auth, sender, rcpt, msg):
    c = await Conn.open(opt, port, src, tls == "implicit")
    try:
        await smtp_hello(opt, c, tls)
        if auth:
            await c.cmd(plain(*auth), "auth", 2)
        await c.cmd(f"MAIL FROM:<{sender}>\r\n".encode(), "mail", 2)
        await c.cmd(f"RCPT TO:<{rcpt}>\r\n".encode(), "rcpt", 2)
        await c.cmd(b"DATA\r\n", "data", 3)
        await c.cmd(msg + b".\r\n", "dot", 2)
        await smtp_quit(c)
    finally:
        await c.close()


async def pop3_session(opt, port, src, tls, user, pw, mode):
    """mode: 'read' (RETR + DELE all), 'empty' (DELE all), 'count'. Returns (#msgs, bytes)."""
    c = await Conn.open(opt, port, src, tls == "implicit")
    got = size = 0
    try:
        await c.ok("greeting")
        if tls in ("stls", "starttls"):
            await c.pop(b"STLS\r\n", "stls")
            await c.tls(opt)
        await c.pop(f"USER {user}\r\n".encode(), "user")
        await c.pop(f"PASS {pw}\r\n".encode(), "pass")
        n = int((await c.pop(b"STAT\r\n", "stat")).split()[1])
        if mode == "read":
            c.send(b"UIDL\r\n")
            listing = await c.multiline("uidl")
            if listing.count(b"\r\n") < n:
                raise Fail("uidl", f"short listing for {n} messages")
            for i in range(1, n + 1):
                c.send(b"RETR %d\r\n" % i)
                size += len(await c.multiline("retr"))
                got += 1
        if mode in ("read", "empty"):
            for i in range(1, n + 1):
                await c.pop(b"DELE %d\r\n" % i, "dele")
        await c.pop(b"QUIT\r\n", "quit")
        return (got if mode == "read" else n), size
    finally:
        await c.close()


# ---------------------------------------------------------------------------- driver
class Tally:
    def __init__(self):
        self.lat, self.by_kind, self.errors, self.examples = [], {}, Counter(), {}
        self.ok = self.started = 0
        self.extra = Counter()

    def error(self, e):
        if isinstance(e, Fail):
            key = e.step
        elif isinstance(e, TimeoutError):
            key = "timeout"
        elif isinstance(e, ssl.SSLError):
            key = "tls"
        elif isinstance(e, OSError):
            key = f"os-{e.errno}"
        else:
            key = type(e).__name__
        self.errors[key] += 1
        self.examples.setdefault(key, str(e)[:120])


async def closed_loop(opt, tally, session, count, seconds, workers):
    """`workers` clients run sessions back to back until `count` started or time is up."""
    stop_at = time.monotonic() + seconds

    async def worker(wid):
        while time.monotonic() < stop_at and (not count or tally.started < count):
            n = tally.started
            tally.started += 1
            t0 = time.perf_counter()
            try:
                async with asyncio.timeout(opt.timeout):
                    kind = await session(n, wid)
                dt = time.perf_counter() - t0
                tally.ok += 1
                tally.lat.append(dt)
                if kind:
                    tally.by_kind.setdefault(kind, []).append(dt)
            except Exception as e:  # noqa: BLE001 -- counted, never fatal
                tally.error(e)
                await asyncio.sleep(0.02)

    t0 = time.perf_counter()
    tasks = [asyncio.create_task(worker(i)) for i in range(workers)]
    _, pending = await asyncio.wait(tasks, timeout=seconds + opt.timeout + 5)
    for t in pending:
        t.cancel()
    if pending:
        tally.errors["hard-stop"] += len(pending)
    return time.perf_counter() - t0


async def measured(opt, res, tally, session, count, seconds, workers):
    srv = opt.server
    mem0 = srv.memory() if srv else {}
    peak = dict(mem0)

    async def sample_memory():  # peak server memory while the load runs
        while True:
            await asyncio.sleep(opt.mem_every)
            m = await asyncio.to_thread(srv.memory)
            if m["pss_kib"] > peak.get("pss_kib", 0):
                peak.update(m)

    sampler = asyncio.create_task(sample_memory()) if srv and opt.mem_every > 0 else None
    c0, m0, o0 = srv.cpu_s(), machine_busy_s(), own_cpu_s()
    elapsed = await closed_loop(opt, tally, session, count, seconds, workers)
    if sampler:
        sampler.cancel()
    res["drain_s"] = round(await srv.wait_idle(opt.settle), 2) if srv else 0
    c1, m1, o1 = srv.cpu_s(), machine_busy_s(), own_cpu_s()
    res.update(ok=tally.ok, errors=sum(tally.errors.values()), error_kinds=dict(tally.errors),
               elapsed_s=round(elapsed, 2), rate=round(tally.ok / elapsed, 2))
    if tally.examples:
        res["error_examples"] = tally.examples
    res.update(latency_fields(tally.lat))
    res["client_cpu_ms_per_op"] = round((o1 - o0) * 1000 / max(1, tally.ok), 3)
    if srv:
        res["server_cpu_s"] = round(c1 - c0, 3)
        res["server_cpu_s_per_1000"] = round((c1 - c0) * 1000 / max(1, tally.ok), 3)
        res["other_cpu_s"] = round((m1 - m0) - (c1 - c0) - (o1 - o0), 2)
        res.update({"server_idle_" + k: v for k, v in mem0.items()})
        res.update({"server_peak_" + k: v for k, v in peak.items()})
        res["pss_kib_per_session"] = round((peak["pss_kib"] - mem0["pss_kib"]) / max(1, workers), 1)
    return res


def disk_flushes():
    """Completed cache-flush requests of all whole disks (/proc/diskstats field 19, Linux >= 5.5)."""
    total = 0
    try:
        with open("/proc/diskstats") as f:
            for line in f:
                v = line.split()
                name = v[2]
                if len(v) >= 20 and not name.startswith(("loop", "ram", "dm-")) and \
                        os.path.exists(f"/sys/block/{name}"):
                    total += int(v[18])
    except OSError:
        return None
    return total


# ---------------------------------------------------------------------------- scenarios
async def run_s1p(opt, res):
    """S1': the C load generator from Postfix (smtp-source), bounded by -n and -d."""
    exe = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    users = read_users(opt.users, opt.first, 1)
    n = opt.count or 1000000
    cmd = [exe, "-c", "-s", str(opt.concurrency), "-m", str(n), "-l", str(opt.size), "-f", opt.sender, "-t", users[0][0],
           "-M", "client.smtp-source.test", f"{opt.host}:{opt.port}"]
    res["argv"] = " ".join(cmd)
    srv = opt.server
    res["loadavg_before"] = [round(x, 2) for x in os.getloadavg()]
    c0, m0, f0 = srv.cpu_s(), machine_busy_s(), disk_flushes()
    ch0 = os.times()
    t0 = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out = bytearray()

    async def pump():  # -c: a running count of completed DATA commands on stdout
        while chunk := await proc.stdout.read(65536):
            out.extend(chunk)

    reader = asyncio.create_task(pump())
    stopped = False
    try:
        await asyncio.wait_for(proc.wait(), timeout=opt.duration)
    except asyncio.TimeoutError:
        stopped = True  # the time bound: count what completed so far
        proc.kill()
        await proc.wait()
    elapsed = time.perf_counter() - t0
    await reader
    err = await proc.stderr.read()
    rc = proc.returncode
    counts = [int(x) for x in bytes(out).replace(b"\r", b"\n").split() if x.isdigit()]
    done = counts[-1] if counts else 0
    res["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    res["drain_s"] = round(await srv.wait_idle(opt.settle), 2) if srv else 0
    c1, m1, f1 = srv.cpu_s(), machine_busy_s(), disk_flushes()
    ch1 = os.times()
    cli = (ch1.children_user - ch0.children_user) + (ch1.children_system - ch0.children_system)
    failed = not stopped and rc != 0
    ok = 0 if failed else (n if rc == 0 else done)
    res.update(ok=ok, errors=1 if failed else 0, rc=rc, stopped_by_time=stopped, elapsed_s=round(elapsed, 2),
               rate=round(ok / elapsed, 2) if ok else 0.0, client_cpu_ms_per_op=round(cli * 1000 / max(1, ok), 3))
    if failed:
        res["stderr"] = err.decode(errors="replace")[-400:]
    if f0 is not None and f1 is not None and ok:
        res["disk_flushes_per_msg"] = round((f1 - f0) / ok, 3)
    if srv:
        res["server_cpu_s"] = round(c1 - c0, 3)
        res["server_cpu_s_per_1000"] = round((c1 - c0) * 1000 / max(1, ok), 3)
        res["other_cpu_s"] = round((m1 - m0) - (c1 - c0) - cli, 2)
    return res


async def run_s1(opt, res):
    users = read_users(opt.users, opt.first, opt.limit)
    rcpt, src, t = RoundRobin([u for u, _ in users]), RoundRobin(opt.src), Tally()

    async def session(n, wid):
        to = rcpt()
        await smtp_send(opt, opt.port, src(), opt.tls, None, opt.sender, to, message(opt.size, opt.sender, to, n))

    return await measured(opt, res, t, session, opt.count, opt.duration, opt.concurrency)


async def run_s2(opt, res):
    users = RoundRobin(read_users(opt.users, opt.first, opt.limit))
    src, t = RoundRobin(opt.src), Tally()

    async def session(n, wid):
        user, pw = users()
        to = f"rcpt{n}@{opt.rcpt_domain}"
        await smtp_send(opt, opt.port, src(), opt.tls, (user, pw), user, to, message(opt.size, user, to, n))

    return await measured(opt, res, t, session, opt.count, opt.duration, opt.concurrency)


async def run_s2r(opt, res):
    """S2 as a returning mail program: TLS resumed with the user's previous ticket, auth cache warm."""
    if opt.tls != "starttls":
        sys.exit("loadgen: s2r needs --tls starttls")
    users = read_users(opt.users, opt.first, opt.limit)
    ctx, tickets, srv, src = resuming_context(), {}, opt.server, RoundRobin(opt.src)

    async def submit(user, pw, n, tally, send):
        """One session with the user's last TLS session offered; keeps the newest one."""
        RESUME.set(tickets.get(user))
        c = await Conn.open(opt, opt.port, src(), False)
        try:
            await smtp_hello(opt, c, "starttls", ctx)
            await c.cmd(plain(user, pw), "auth", 2)
            if send:
                to = f"rcpt{n}@{opt.rcpt_domain}"
                await c.cmd(f"MAIL FROM:<{user}>\r\n".encode(), "mail", 2)
                await c.cmd(f"RCPT TO:<{to}>\r\n".encode(), "rcpt", 2)
                await c.cmd(b"DATA\r\n", "data", 3)
                await c.cmd(message(opt.size, user, to, n) + b".\r\n", "dot", 2)
            await smtp_quit(c)
            so = c.ssl_object()
            tally.extra["tls"] += 1
            tally.extra["resumed"] += bool(so.session_reused)
            tally.extra[f"tls {so.version()}"] += 1
            # TLS 1.3: the server's tickets come after the handshake; by now they have been read
            if so.session is not None:
                tickets[user] = so.session
        finally:
            await c.close()

    # Warm-up (not measured): every user this run can use logs in once over TLS: the server's
    # auth cache then holds every credential and every user's client holds a ticket.
    warm = Tally()

    async def warm_session(n, wid):
        await submit(*users[n], n, warm, False)

    cw0, tw0 = srv.cpu_s(), time.monotonic()
    await closed_loop(opt, warm, warm_session, len(users), max(opt.duration, 120.0), opt.concurrency)
    if srv:
        await srv.wait_idle(opt.settle)
    res.update(warmup_sessions=warm.ok, warmup_errors=sum(warm.errors.values()),
               warmup_s=round(time.monotonic() - tw0, 2), warmup_server_cpu_s=round(srv.cpu_s() - cw0, 3),
               warmup_tls_resumed=warm.extra["resumed"])
    if warm.examples:
        res["warmup_error_examples"] = warm.examples
    say(f"s2r: warm-up {warm.ok} logins of {len(users)} users, {res['warmup_errors']} errors, "
        f"{res['warmup_s']} s (not measured)")
    if opt.warmup_done:  # bench/profile starts perf on this signal
        with open(opt.warmup_done, "w") as f:
            f.write(f"{warm.ok}\n")

    pick, t = RoundRobin(users), Tally()
    log_at = None
    if opt.server_log:
        try:
            log_at = os.path.getsize(opt.server_log)
        except OSError:
            say(f"loadgen: cannot read {opt.server_log}; no auth cache counts")

    async def session(n, wid):
        user, pw = pick()
        await submit(user, pw, n, t, True)

    res = await measured(opt, res, t, session, opt.count, opt.duration, opt.concurrency)
    res["tls_connections"], res["tls_resumed"] = t.extra["tls"], t.extra["resumed"]
    res["tls_resumed_ratio"] = round(t.extra["resumed"] / t.extra["tls"], 3) if t.extra["tls"] else None
    res["tls_versions"] = {k[4:]: v for k, v in t.extra.items() if k.startswith("tls ")}
    if log_at is not None:
        hits = misses = 0
        with open(opt.server_log, "rb") as f:
            f.seek(log_at)
            for line in f:
                if b"event=auth.ok" in line:
                    hits += b"cache=hit" in line
                    misses += b"cache=miss" in line
        res.update(auth_cache_hits=hits, auth_cache_misses=misses)
    problems = []
    if not t.extra["tls"]:
        problems.append("no TLS connection completed")
    elif res["tls_resumed_ratio"] < 0.9:
        problems.append(f"TLS resumption NOT working: {t.extra['resumed']} of {t.extra['tls']} connections resumed")
    if res.get("auth_cache_misses"):
        problems.append(f"auth cache not warm: {res['auth_cache_misses']} cache misses in the measured window")
    if warm.ok < len(users):
        problems.append(f"warm-up incomplete: {warm.ok} of {len(users)} users logged in "
                        f"({res['warmup_errors']} errors)")
    if problems:
        res["warning"] = "; ".join(problems)
        say("s2r: WARNING: " + res["warning"])
    return res


async def run_s3(opt, res):
    users = read_users(opt.users, opt.first, opt.limit)
    pick, src, t = RoundRobin(users), RoundRobin(opt.src), Tally()

    async def session(n, wid):
        user, pw = pick()
        got, size = await pop3_session(opt, opt.port, src(), opt.tls, user, pw, "read")
        t.extra["messages"] += got
        t.extra["bytes"] += size
        if not got:
            t.extra["empty"] += 1

    res = await measured(opt, res, t, session, opt.count or len(users), opt.duration, opt.concurrency)
    res["messages"], res["empty_mailboxes"] = t.extra["messages"], t.extra["empty"]
    res["msg_rate"] = round(t.extra["messages"] / res["elapsed_s"], 2)
    if "server_cpu_s" in res and t.extra["messages"]:
        res["server_cpu_s_per_1000_msgs"] = round(res["server_cpu_s"] * 1000 / t.extra["messages"], 3)
    return res


async def run_s4(opt, res):
    users = RoundRobin(read_users(opt.users, opt.first, opt.limit))
    # --bad-first/--bad-limit: attackers guess passwords of OTHER accounts than the good
    # clients use (diagnostic variant: separates per-account from per-IP penalties)
    bad_users = RoundRobin(read_users(opt.users, opt.bad_first, opt.bad_limit)) if opt.bad_limit else users
    good_src = RoundRobin(opt.src)
    if opt.bad_src:
        bad_pool = address_pool(opt.bad_src)
    else:  # a fresh /24 per run: penalties from an earlier run must not carry over
        a, b = random.randint(200, 250), random.randint(0, 255)
        bad_pool = address_pool(f"127.{a}.{b}.1-127.{a}.{b}.254")
    bad_src, t = RoundRobin(bad_pool), Tally()
    res["bad_src"] = f"{bad_pool[0]}-{bad_pool[-1]}"

    async def session(n, wid):
        bad = (n % 2 == 1) if opt.concurrency == 1 else (wid % 2 == 1)
        user, pw = bad_users() if bad else users()
        c = await Conn.open(opt, opt.port, bad_src() if bad else good_src(), opt.tls == "implicit")
        try:
            await smtp_hello(opt, c, opt.tls)
            code = await c.cmd(plain(user, pw + "-x" if bad else pw), "auth", None)
            await smtp_quit(c)
        finally:
            await c.close()
        if bad:
            if code // 100 == 2:
                raise Fail("auth", "WRONG PASSWORD ACCEPTED")
            t.extra[f"bad_{code}"] += 1
            return "bad"
        if code // 100 != 2:
            raise Fail("auth", f"good login refused: {code}")
        return "good"

    res = await measured(opt, res, t, session, opt.count, opt.duration, opt.concurrency)
    good, bad = t.by_kind.get("good", []), t.by_kind.get("bad", [])
    res.update(good=len(good), bad=len(bad), good_rate=round(len(good) / res["elapsed_s"], 2),
               bad_rate=round(len(bad) / res["elapsed_s"], 2),
               bad_replies={k[4:]: v for k, v in t.extra.items()})
    res.update(latency_fields(good, "good"))
    res.update(latency_fields(bad, "bad"))
    return res


async def run_login(opt, res, with_auth=True):
    user, pw = read_users(opt.users, opt.user_index, 1)[0]
    src, t = RoundRobin(opt.src), Tally()

    async def session(n, wid):
        c = await Conn.open(opt, opt.port, src(), opt.tls == "implicit")
        try:
            await smtp_hello(opt, c, opt.tls)
            if with_auth:
                await c.cmd(plain(user, pw), "auth", 2)
            await smtp_quit(c)
        finally:
            await c.close()

    res["user"] = user if with_auth else None
    return await measured(opt, res, t, session, opt.count, opt.duration, opt.concurrency)


async def run_s5(opt, res):
    srv, src = opt.server, RoundRobin(opt.src)
    held, first_failure = [], []
    mem0 = srv.memory() if srv else {}
    gate = asyncio.Semaphore(opt.inflight)
    failed = asyncio.Event()

    async def open_one():
        c = None
        try:
            async with asyncio.timeout(opt.greet_timeout):
                c = await Conn.open(opt, opt.port, src(), False)
                code = await c.reply("greeting")
            if code != 220:
                raise Fail("greeting", str(code))
            held.append(c)
        except Exception as e:  # noqa: BLE001
            if c:
                await c.close(abort=True)
            if not failed.is_set():
                failed.set()
                first_failure.append(f"{type(e).__name__}: {e}"[:140])
        finally:
            gate.release()

    t0 = time.monotonic()
    deadline, tasks, started, due = t0 + opt.duration, set(), 0, t0
    stop = f"reached {opt.max}"
    while started < opt.max and not failed.is_set():
        if time.monotonic() > deadline:
            stop = "time limit during ramp"
            break
        await gate.acquire()
        if failed.is_set():
            gate.release()
            break
        task = asyncio.create_task(open_one())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        started += 1
        due += 1.0 / opt.rate
        if due > time.monotonic():
            await asyncio.sleep(due - time.monotonic())
    if tasks:
        await asyncio.wait(set(tasks), timeout=opt.greet_timeout + 5)
    ramp = time.monotonic() - t0
    if first_failure:
        stop = f"first failure after {len(held)}: {first_failure[0]}"
    say(f"s5: {len(held)} connections held ({stop}); holding {opt.hold}s")
    await asyncio.sleep(opt.hold)
    alive = sum(1 for c in held if not c.r.at_eof() and not c.w.is_closing())
    mem1 = srv.memory() if srv else {}
    for c in held:
        try:
            c.send(b"QUIT\r\n")
        except Exception:  # noqa: BLE001
            pass
    await asyncio.sleep(0.5)
    await asyncio.gather(*(c.close(abort=True) for c in held))
    res.update(held=len(held), alive=alive, stop=stop, ramp_s=round(ramp, 1), started=started,
               rate=len(held), errors=0 if not first_failure or len(held) >= opt.max else 1)
    if mem1:
        res.update({f"idle_{k}": v for k, v in mem0.items()})
        res.update({f"peak_{k}": v for k, v in mem1.items()})
        if held:
            res["pss_kib_per_session"] = round((mem1["pss_kib"] - mem0["pss_kib"]) / len(held), 1)
    return res


async def run_fill(opt, res):
    users = read_users(opt.users, opt.first, opt.limit)
    src, sem = RoundRobin(opt.src), asyncio.Semaphore(opt.concurrency)
    t0 = time.monotonic()

    async def pop(u, p, mode):
        async with sem:
            try:
                async with asyncio.timeout(opt.timeout):
                    return (await pop3_session(opt, opt.pop3_port, src(), opt.pop3_tls, u, p, mode))[0]
            except Exception as e:  # noqa: BLE001
                say(f"fill: {u}: {type(e).__name__} {e}")
                return -1

    removed = await asyncio.gather(*(pop(u, p, "empty") for u, p in users))
    jobs = [u for _ in range(opt.per_user) for u, _ in users]
    t = Tally()

    async def send(n, wid):
        to = jobs[n]
        await smtp_send(opt, opt.port, src(), "none", None, opt.sender, to, message(opt.size, opt.sender, to, n))

    await closed_loop(opt, t, send, len(jobs), opt.duration, opt.concurrency)
    missing = list(users)
    until = time.monotonic() + opt.wait
    while missing and time.monotonic() < until:
        counts = await asyncio.gather(*(pop(u, p, "count") for u, p in missing))
        missing = [up for up, n in zip(missing, counts) if n < opt.per_user]
        if missing:
            await asyncio.sleep(0.5)
    res.update(mailboxes=len(users), removed=sum(x for x in removed if x > 0), sent=t.ok,
               errors=sum(t.errors.values()) + len(missing), incomplete=len(missing),
               seconds=round(time.monotonic() - t0, 1))
    return res


# ---------------------------------------------------------------------------- CLI
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=["s1", "s1p", "s2", "s2r", "s3", "s4", "s4x", "s5", "fill", "login", "hello"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--tls", default="none", help="none | starttls | implicit (POP3: stls = starttls)")
    ap.add_argument("--users", required=True, help="'address password' per line (bench<N>@... used)")
    ap.add_argument("--first", type=int, default=0, help="skip the first N bench users")
    ap.add_argument("--limit", type=int, default=0, help="use at most N bench users")
    ap.add_argument("--user-index", type=int, default=300, help="login/hello: the one user (index)")
    ap.add_argument("-c", "--concurrency", type=int, default=8)
    ap.add_argument("-n", "--count", type=int, default=0, help="max sessions (0 = time only; s3: 1 per mailbox)")
    ap.add_argument("-d", "--duration", type=float, default=10.0, help="wall-clock bound, seconds")
    ap.add_argument("--timeout", type=float, default=30.0, help="per-session bound, seconds")
    ap.add_argument("--settle", type=float, default=60.0, help="max wait for the server to go idle")
    ap.add_argument("--size", type=int, default=10240)
    ap.add_argument("--sender", default="sender@outside.test")
    ap.add_argument("--rcpt-domain", default="remote.test")
    ap.add_argument("--src", default="127.0.1.1-127.0.1.254")
    ap.add_argument("--bad-src", default="")
    ap.add_argument("--bad-first", type=int, default=0, help="s4: attackers' accounts start here")
    ap.add_argument("--bad-limit", type=int, default=0, help="s4: attackers use their own N accounts")
    ap.add_argument("--max", type=int, default=10000, help="s5: sessions to open")
    ap.add_argument("--rate", type=float, default=1000.0, help="s5: new connections per second")
    ap.add_argument("--inflight", type=int, default=64, help="s5: connects awaiting a greeting")
    ap.add_argument("--greet-timeout", type=float, default=5.0)
    ap.add_argument("--hold", type=float, default=5.0)
    ap.add_argument("--per-user", type=int, default=5)
    ap.add_argument("--wait", type=float, default=120.0, help="fill: wait for delivery")
    ap.add_argument("--pop3-port", type=int, default=0)
    ap.add_argument("--pop3-tls", default="stls")
    ap.add_argument("--pid", type=int, action="append", default=[])
    ap.add_argument("--pidfile", action="append", default=[])
    ap.add_argument("--server-log", default="", help="s2r: the server's log file (auth cache hits/misses)")
    ap.add_argument("--warmup-done", default="", help="s2r: create this file when the warm-up is over")
    ap.add_argument("--mem-every", type=float, default=2.0, help="seconds between memory samples (0 = off)")
    ap.add_argument("--label", default="")
    opt = ap.parse_args()
    opt.src = address_pool(opt.src)
    opt.server = ServerTree(opt.pid, opt.pidfile)
    opt.sslctx = ssl.create_default_context()
    opt.sslctx.check_hostname = False
    opt.sslctx.verify_mode = ssl.CERT_NONE
    opt.ehlo = b"EHLO client.bench.postern.test\r\n"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = opt.max + 1000 if opt.scenario == "s5" else 4096
    if soft < min(need, hard):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    res = {"scenario": opt.scenario, "label": opt.label, "concurrency": opt.concurrency,
           "port": opt.port, "tls": opt.tls, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    fn = {"s1": run_s1, "s1p": run_s1p, "s2": run_s2, "s2r": run_s2r, "s3": run_s3, "s4": run_s4, "s4x": run_s4, "s5": run_s5, "fill": run_fill,
          "login": run_login, "hello": lambda o, r: run_login(o, r, with_auth=False)}[opt.scenario]
    if opt.scenario == "s5":
        res["concurrency"] = opt.max
    res = asyncio.run(fn(opt, res))
    print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
