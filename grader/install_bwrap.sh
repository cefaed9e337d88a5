#!/bin/sh
# bubblewrap (bwrap) is the sandbox every run of submission code uses (grader/judge/sandbox.py). Install it with
# apt-get when this is Debian/Ubuntu and we are root; otherwise say exactly what to run. Never fails `make
# install`: without bwrap the kit's own tests and a student's `make test` still run, and `ca15-grade`
# refuses to grade (or grades with --no-sandbox, marked unsandboxed).
if command -v bwrap >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing bubblewrap (the grader's sandbox) with apt-get ..."
    if apt-get install -y -qq bubblewrap >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq bubblewrap >/dev/null 2>&1; }; then
        echo "bubblewrap $(bwrap --version | cut -d' ' -f2) installed"
        exit 0
    fi
fi
cat <<'MSG'
NOTE: bubblewrap (bwrap) is not installed. The grader runs submission code only inside it.
  Debian/Ubuntu:  sudo apt-get install bubblewrap
  Fedora/RHEL:    sudo dnf install bubblewrap
  It also needs unprivileged user namespaces (on by default on Debian 11+ and Ubuntu; Ubuntu 24.04 with
  AppArmor: sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0), or run the grader as root.
MSG
exit 0
