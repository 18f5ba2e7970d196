"""The Debian package as an operator installs it: `dpkg -i` on this machine, the unit
accepted by `systemd-analyze verify`, `man alertflow` rendering, bash completions loading,
the shipped configuration valid, and `dpkg --purge` taking it all away again."""
import os
import shutil
import subprocess

import pytest

from conftest import BIN, ROOT


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("dpkg -i needs root (CI runs as root)")
    out_dir = tmp_path_factory.mktemp("deb")
    built = run(str(ROOT / "scripts" / "package-deb"), "--binary", BIN, "--out", str(out_dir), "--compress", "gzip")
    assert built.returncode == 0, built.stderr
    deb = built.stdout.strip().splitlines()[-1]
    assert deb.endswith("_amd64.deb") or deb.endswith(".deb"), deb
    info = run("dpkg-deb", "--info", deb)
    assert "Package: alertflow" in info.stdout and "conffiles" in info.stdout, info.stdout
    inst = run("dpkg", "-i", deb)
    assert inst.returncode == 0, inst.stdout + inst.stderr
    yield deb
    purge = run("dpkg", "--purge", "alertflow")
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert not os.path.exists("/usr/bin/alertflow")
    assert run("getent", "passwd", "alertflow").returncode != 0, "the system user goes with purge"


def test_the_package_installs_a_working_binary_a_user_and_a_valid_configuration(installed):
    assert run("/usr/bin/alertflow", "--version").stdout.startswith("alertflow ")
    user = run("getent", "passwd", "alertflow")
    assert user.returncode == 0 and "/var/lib/alertflow" in user.stdout, user.stdout
    assert user.stdout.strip().endswith(("nologin", "/bin/false")), "a system user without a shell: " + user.stdout
    check = run("/usr/bin/alertflow", "check-config", "/etc/alertflow/alertflow.toml")
    assert check.returncode == 0, check.stderr
    status = run("dpkg-query", "-W", "-f", "${Status} ${Conffiles}", "alertflow")
    assert "install ok installed" in status.stdout and "/etc/alertflow/alertflow.toml" in status.stdout, status.stdout
    # Shipped without debug info (it goes beside the package).
    sections = run("objdump", "-h", "/usr/bin/alertflow").stdout
    assert ".debug_info" not in sections and ".gnu_debuglink" in sections


def test_systemd_accepts_the_hardened_unit(installed):
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: scripts/test installs the systemd package")
    unit = "/lib/systemd/system/alertflow.service"
    verify = run("systemd-analyze", "verify", unit)
    problems = [l for l in (verify.stdout + verify.stderr).splitlines() if "alertflow.service" in l]
    assert verify.returncode == 0 and not problems, verify.stdout + verify.stderr
    text = open(unit).read()
    for line in ["User=alertflow", "ProtectSystem=strict", "ReadWritePaths=/var/lib/alertflow", "NoNewPrivileges=true", "CapabilityBoundingSet=\n"]:
        assert line in text, line


def test_man_renders_and_bash_completions_load(installed):
    page = run("man", "-P", "cat", "alertflow", env={**os.environ, "MANWIDTH": "100"})
    assert page.returncode == 0, page.stderr
    assert "alertflow-run(1)" in page.stdout and "alertflow-query(1)" in page.stdout, page.stdout[:2000]
    sub = run("man", "-P", "cat", "alertflow-prune", env={**os.environ, "MANWIDTH": "100"})
    assert sub.returncode == 0 and "--dry-run" in sub.stdout, sub.stdout[:2000]
    # The completion function offers the subcommands after `alertflow `.
    script = (
        "source /usr/share/bash-completion/completions/alertflow && complete -p alertflow >/dev/null && "
        "COMP_WORDS=(alertflow q); COMP_CWORD=1; COMP_LINE='alertflow q'; COMP_POINT=${#COMP_LINE}; "
        "_alertflow alertflow q alertflow; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    comp = run("bash", "-c", script)
    assert comp.returncode == 0, comp.stderr
    assert "query" in comp.stdout.split(), comp.stdout
