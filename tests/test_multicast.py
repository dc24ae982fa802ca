"""Multicast memberships at restore: an interface a saved membership names that the host
has not (here: the images say lo was called otherwise) refuses the restore in one line
before anything is made. (Memberships restored and used: workload mcastsk, in
test_end_to_end.)"""

from __future__ import annotations

import os
import re

import harness
import pytest
from test_crafted_images import _rewrite

import torpor
from torpor.errors import TorporError


def _interface_renamed(decoded, pid):
    for f in decoded["files.img"]:
        if f.HasField("isk"):
            for member in (
                *f.isk.ip_opts.torpor_memberships,
                *f.isk.torpor_ipv6_opts.torpor_memberships,
            ):
                member.ifname = "gone0"


def test_membership_on_an_interface_the_host_has_not_refuses_the_restore(start_workload, tmp_path):
    w = start_workload("mcastsk")
    w.wait_ready()
    images = harness.dump_killed(w, tmp_path)
    _rewrite(images, _interface_renamed, w.pid)
    with pytest.raises(TorporError) as e:
        torpor.restore(str(images))
    message = str(e.value)
    assert "\n" not in message, message
    assert re.search(
        r"a socket joined the multicast group [0-9a-f.:]+ on interface \d+ \(gone0\), "
        "which this host has not",
        message,
    ), message
    assert not harness.pid_alive(w.pid), "a refused restore left a process"
    assert harness.child_pids(os.getpid()) == set(), "a refused restore left a child"
