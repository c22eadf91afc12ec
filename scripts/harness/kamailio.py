"""Kamailio as a P-CSCF in front of the registrar: pcscf.cfg (beside this file) started with the
values of one run (its listener, our S-CSCF, a runtime directory of its own), waited for until
its control socket answers, asked over that socket (kamcmd) and stopped.

Kamailio 5.6's ims_registrar_pcscf does not load without ims_ipsec_pcscf, and ims_ipsec_pcscf
deletes every IPsec SA and policy of the host when it starts: run it only in a network namespace
of its own (`unshare --net`), as tests/e2e/test_kamailio_pcscf.py does.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

KAMAILIO = shutil.which("kamailio") or (
    "/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None)
KAMCMD = shutil.which("kamcmd") or (
    "/usr/sbin/kamcmd" if Path("/usr/sbin/kamcmd").exists() else None)
# Where Debian (any architecture) and a build from source put the modules.
MODULE_DIRS = ("/usr/lib/*/kamailio/modules", "/usr/lib/kamailio/modules",
               "/usr/local/lib/*/kamailio/modules", "/usr/local/lib/kamailio/modules")
IMS_MODULES = ("ims_usrloc_pcscf", "ims_registrar_pcscf", "ims_ipsec_pcscf", "pua", "db_text")
# The db_text tables of the Debian package: pua opens its table at start even in memory mode.
DBTEXT_TABLES = Path("/usr/share/kamailio/dbtext/kamailio")
CONFIG = Path(__file__).resolve().parent / "pcscf.cfg"


def missing() -> str | None:
    """Why a Kamailio P-CSCF cannot run here (None: it can): the binaries, the modules."""
    if KAMAILIO is None or KAMCMD is None:
        return "kamailio is not installed (Debian: kamailio)"
    found = {module.stem for pattern in MODULE_DIRS for module in Path("/").glob(
        pattern.lstrip("/") + "/*.so")}
    absent = [name for name in IMS_MODULES if name not in found]
    if absent:
        return (f"Kamailio modules missing: {', '.join(absent)} (Debian: kamailio-ims-modules, "
                "kamailio-presence-modules)")
    if not (DBTEXT_TABLES / "pua").exists():
        return f"no db_text table for pua in {DBTEXT_TABLES}"
    return None


@dataclass
class Pcscf:
    """A running Kamailio P-CSCF: its process, SIP port, control socket and every log line."""

    process: subprocess.Popen
    port: int
    control: str
    output: list[str] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"sip:127.0.0.1:{self.port}"

    def kamcmd(self, *command: str, timeout: float = 10.0) -> str:
        """One RPC over the control socket; kamcmd's text output (it raises on failure)."""
        done = subprocess.run([KAMCMD, "-s", self.control, *command], capture_output=True,
                              text=True, timeout=timeout, check=False)
        if done.returncode != 0 or done.stdout.startswith("error:"):
            raise RuntimeError(f"kamcmd {' '.join(command)}: {done.stderr or done.stdout}")
        return done.stdout

    def usrloc_records(self) -> int:
        """Contacts in the P-CSCF's usrloc (``ulpcscf.status``, every state, pending too)."""
        return sum(int(line.split(":", 1)[1]) for line in self.kamcmd("ulpcscf.status").splitlines()
                   if line.strip().startswith("Records:"))

    def statistics(self, group: str) -> dict[str, int]:
        """The statistics of one group, e.g. ``ims_usrloc_pcscf`` (``registered_contacts``...)."""
        out = {}
        for line in self.kamcmd("stats.get_statistics", f"{group}:").splitlines():
            key, _, value = line.strip().partition(" = ")
            out[key.removeprefix(f"{group}:")] = int(value)
        return out

    def lines(self, text: str) -> list[str]:
        return [line for line in list(self.output) if text in line]

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after 15 s; the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_pcscf(workdir: Path, port: int, scscf_port: int, timeout: float = 30.0) -> Pcscf:
    """Kamailio with pcscf.cfg on 127.0.0.1:``port`` (UDP and TCP), sending
    REGISTERs and its reg-event SUBSCRIBEs to our S-CSCF on 127.0.0.1:``scscf_port``; in the
    foreground, logging to stderr, with its runtime files under ``workdir``. Returns once its
    control socket answers."""
    run = workdir / "kamailio"
    (run / "db").mkdir(parents=True, exist_ok=True)
    for table in ("pua", "version"):
        shutil.copy(DBTEXT_TABLES / table, run / "db" / table)
    control = f"unix:{run / 'ctl'}"
    defines = {
        "LISTEN_UDP": f"udp:127.0.0.1:{port}",
        "LISTEN_TCP": f"tcp:127.0.0.1:{port}",
        "PCSCF_URI": f'"sip:127.0.0.1:{port}"',
        "SCSCF_URI": f'"sip:127.0.0.1:{scscf_port}"',
        "CTL_SOCKET": f'"{control}"',
        "DB_URL": f'"text://{run / "db"}"',
    }
    cmd = [KAMAILIO, "-f", str(CONFIG), "-DD", "-E", "-m", "64", "-M", "8", "-Y", str(run),
           "-P", str(run / "kamailio.pid"), "-w", str(run)]
    for name, value in defines.items():
        cmd += ["-A", f"{name}={value}"]
    process = subprocess.Popen(cmd, cwd=run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    pcscf = Pcscf(process, port, control)
    threading.Thread(target=_pump, args=(process, pcscf.output), daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError("kamailio ended at start:\n" + "".join(pcscf.output[-40:]))
        try:
            pcscf.kamcmd("ulpcscf.status", timeout=5)
            return pcscf
        except (RuntimeError, subprocess.TimeoutExpired):
            if time.monotonic() > deadline:
                pcscf.stop()
                raise RuntimeError("kamailio did not answer on its control socket:\n"
                                   + "".join(pcscf.output[-40:]))
            time.sleep(0.2)


def _pump(process: subprocess.Popen, output: list[str]) -> None:
    """Every line into ``output`` as it comes, for readers in other threads."""
    for line in process.stdout:
        output.append(line)  # noqa: PERF402 (one at a time, while the process runs)
