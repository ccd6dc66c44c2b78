#!/usr/bin/env python3
"""Runs the command transcripts of the docs and checks them against the real binary.

A transcript is a ```console block preceded by the marker line

    <!-- transcript -->

Each `$ COMMAND` line of the block is run with bash (`dtls-group` is the binary built from this
checkout) and the lines that follow it, up to the next `$ ` line, must be what it printed
(standard output and standard error together). One temporary directory per document: the
marked blocks of a document run in order in it, as one session, so a later block sees the
files and the background processes of an earlier one. Hidden set-up, for files a reader is
told about in prose, is a comment before the block:

    <!-- transcript-setup
    printf '%s' 00112233445566778899aabbccddeeff > g7e1.key
    -->

A command ending in `&` runs in the background: its output so far is shown once its
`--control PATH` exists (or after 1 s without one); every background process is killed when
the document ends. Every command has a time limit (30 s).

Compared after normalising only what varies from run to run: log timestamps, long hex strings
(public keys and secrets), the build's commit, and the temporary directory.

    scripts/doc_transcripts.py          check; exit 1 with a diff if a block differs
    scripts/doc_transcripts.py --fix    rewrite the blocks that differ with the real output
                                        (lines whose normalised form is unchanged are kept)

The binary: $DTLS_GROUP_BIN, else target/debug/dtls-group after `cargo build -p group-std
--bin dtls-group`.
"""

import difflib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["docs/cli.md", "docs/troubleshooting.md", "README.md", "examples/README.md"]
MARK = "<!-- transcript -->"
SETUP = "<!-- transcript-setup"
TIMEOUT = 30

NORMALISE = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z"), "<TIME>"),
    # Public keys (SEC1 compressed or uncompressed) and 32-byte secrets: random per run.
    (re.compile(r"\b([0-9a-fA-F]{64}|[0-9a-fA-F]{66}|[0-9a-fA-F]{130})\b"), "<HEX>"),
    (re.compile(r"commit [0-9a-f]{7,40}\b"), "commit <COMMIT>"),
    (re.compile(r"commit unknown\b"), "commit <COMMIT>"),
]


def normalise(line, tmp):
    line = line.replace(tmp + "/", "").replace(tmp, ".")
    for pat, rep in NORMALISE:
        line = pat.sub(rep, line)
    return line.rstrip()


def binary():
    b = os.environ.get("DTLS_GROUP_BIN")
    if b:
        return os.path.abspath(b)
    subprocess.run(
        ["cargo", "build", "-q", "-p", "group-std", "--bin", "dtls-group"], cwd=ROOT, check=True
    )
    meta = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    target = re.search(r'"target_directory":"([^"]+)"', meta).group(1)
    return os.path.join(target, "debug", "dtls-group")


class Session:
    """One document's temporary directory and background processes."""

    def __init__(self, bindir, doc):
        self.tmp = os.path.realpath(tempfile.mkdtemp(prefix="dtls-group-doc-"))
        self.env = dict(os.environ)
        self.env["PATH"] = bindir + os.pathsep + self.env.get("PATH", "")
        self.env.pop("DTLS_GROUP_LOG", None)
        self.env["NO_COLOR"] = "1"
        # The document itself, for set-up that takes a file shown in it.
        self.env["DOC"] = doc
        self.background = []
        self.umask = 0o022
        self.rc = 0

    def preexec(self):
        os.umask(self.umask)

    def run(self, command):
        """Runs one command; returns its output lines."""
        m = re.fullmatch(r"umask (\d+)", command.strip())
        if m:
            # Each command runs in its own shell: the umask carries over to the next ones.
            self.umask = int(m.group(1), 8)
            return []
        if command.endswith("&"):
            return self.spawn(command[:-1].strip())
        try:
            # Each command runs in its own shell; `$?` is the previous command's status.
            p = subprocess.run(
                ["bash", "-c", f"(exit {self.rc}); {command}"],
                cwd=self.tmp,
                env=self.env,
                stdin=subprocess.DEVNULL,
                preexec_fn=self.preexec,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=TIMEOUT,
                text=True,
            )
            out = p.stdout
            self.rc = p.returncode
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            out += f"<timed out after {TIMEOUT} s>\n"
        return out.splitlines()

    def spawn(self, command):
        log = os.path.join(self.tmp, f".bg{len(self.background)}.log")
        f = open(log, "w")
        p = subprocess.Popen(
            ["bash", "-c", "exec " + command],
            cwd=self.tmp,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            preexec_fn=self.preexec,
            start_new_session=True,
        )
        self.background.append(p)
        m = re.search(r"--control\s+(\S+)", command)
        deadline = time.monotonic() + (10 if m else 1)
        while time.monotonic() < deadline and p.poll() is None:
            if m and os.path.exists(os.path.join(self.tmp, m.group(1))):
                break
            time.sleep(0.05)
        time.sleep(0.3)
        f.flush()
        with open(log) as r:
            return r.read().splitlines()

    def close(self):
        for p in self.background:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def blocks(lines):
    """(setup lines, first line index, end index) of each marked block."""
    i, setup = 0, []
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith(SETUP):
            j = i + 1
            while lines[j].strip() != "-->":
                setup.append(lines[j])
                j += 1
            i = j + 1
            continue
        if line == MARK:
            j = i + 1
            while not lines[j].strip().startswith("```"):
                j += 1
            start = j + 1
            k = start
            while not lines[k].strip().startswith("```"):
                k += 1
            yield setup, start, k
            setup = []
            i = k + 1
            continue
        i += 1


def check_doc(path, bindir, fix):
    full = os.path.join(ROOT, path)
    with open(full) as f:
        lines = f.read().split("\n")
    session = Session(bindir, full)
    failures, count = [], 0
    replacements = []
    try:
        for setup, start, end in blocks(lines):
            count += 1
            if setup:
                session.run("\n".join(setup))
            doc = lines[start:end]
            real = []
            i = 0
            while i < len(doc):
                if doc[i].startswith("$ "):
                    # A command continued with a trailing backslash spans several lines.
                    j = i
                    while doc[j].endswith("\\") and j + 1 < len(doc):
                        j += 1
                    real.extend(doc[i : j + 1])
                    real.extend(session.run("\n".join(doc[i : j + 1])[2:]))
                    i = j
                i += 1
            a = [normalise(x, session.tmp) for x in doc]
            b = [normalise(x, session.tmp) for x in real]
            if a != b:
                failures.append((start, a, b))
                # Keep the doc's line where only what varies differs.
                kept, di = [], {}
                for x in doc:
                    di.setdefault(normalise(x, session.tmp), []).append(x)
                for x in real:
                    n = normalise(x, session.tmp)
                    kept.append(di[n].pop(0) if di.get(n) else x.replace(session.tmp + "/", ""))
                replacements.append((start, end, kept))
    finally:
        session.close()
    for start, a, b in failures:
        print(f"{path}:{start + 1}: the block differs from the real output:")
        sys.stdout.writelines(
            x + "\n" for x in difflib.unified_diff(a, b, "doc", "real", lineterm="")
        )
    if fix and replacements:
        for start, end, kept in reversed(replacements):
            lines[start:end] = kept
        with open(full, "w") as f:
            f.write("\n".join(lines))
        print(f"{path}: rewrote {len(replacements)} block(s)")
    return count, len(failures)


def main():
    fix = "--fix" in sys.argv[1:]
    bindir = os.path.dirname(binary())
    total, bad = 0, 0
    for path in DOCS:
        if not os.path.exists(os.path.join(ROOT, path)):
            continue
        n, f = check_doc(path, bindir, fix)
        print(f"{path}: {n} transcript(s), {f} differ")
        total += n
        bad += f
    if total == 0:
        print("no transcript found: the markers are gone")
        return 1
    print(f"{total - bad} passed, {bad} failed")
    return 1 if bad and not fix else 0


if __name__ == "__main__":
    sys.exit(main())
