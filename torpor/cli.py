"""The torpor command line: parses arguments, calls the API, turns errors into one line."""

import logging
import os
import re
import sys

import click

from torpor.errors import TorporError, one_line


def _fail(message: str) -> None:
    click.echo(f"torpor: error: {one_line(message)}", err=True)
    sys.exit(1)


class _OneLine(logging.Formatter):
    """Each record one line, whatever of the images its message quotes (see errors.one_line);
    the traceback -vv adds to an internal error follows on lines of its own."""

    def formatMessage(self, record) -> str:  # noqa: N802 (logging's name)
        return one_line(super().formatMessage(record))


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if not verbose else logging.INFO if verbose == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine("torpor: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


class _Progress:
    """Shows bytes moved and rate on a terminal once an operation runs past a second
    ($TORPOR_PROGRESS_AFTER seconds); nothing at all when stderr is not a terminal."""

    def __init__(self, what: str):
        self.what = what
        self.bar = None
        self.task = None
        self.started = None
        self.enabled = sys.stderr.isatty()
        self.after = float(os.environ.get("TORPOR_PROGRESS_AFTER", "1.0"))

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        import time

        now = time.monotonic()
        if self.started is None:
            self.started = now
        if self.bar is None:
            if now - self.started < self.after:
                return
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TransferSpeedColumn,
            )

            self.bar = Progress(
                f"[bold]{self.what}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=Console(stderr=True),
            )
            self.bar.start()
            self.task = self.bar.add_task(self.what, total=total)
        self.bar.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _run(call):
    try:
        return call()
    except TorporError as e:
        _fail(str(e))
    except KeyboardInterrupt:
        _fail("interrupted")
    except Exception as e:  # a bug of torpor's: still one line, and what to report
        logging.getLogger("torpor").debug("internal error", exc_info=True)
        detail = " ".join(str(e).split())
        _fail(f"internal error ({type(e).__name__}: {detail}); please report it (-vv shows where)")


def main() -> None:
    """The torpor command: one line on stderr and exit 1 for any failure or interruption."""
    from torpor.shield import stop_on_signals

    stop_on_signals()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, click.exceptions.Abort):
        _fail("interrupted")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="Log each step (-vv for more).")
def cli(verbose: int) -> None:
    """Checkpoint a running process tree to a directory of images and restore it later."""
    _setup_logging(verbose)


@cli.command()
@click.option("-t", "--tree", "pid", type=int, required=True, help="Root of the tree to dump.")
@click.option("-D", "--images-dir", required=True, type=click.Path(), help="Empty directory.")
@click.option("--leave-running", is_flag=True, help="Let the tree run on after the dump.")
@click.option("--shell-job", is_flag=True, help="Allow fds on the caller's terminal.")
@click.option(
    "--ghost-limit",
    type=click.IntRange(min=0),
    default=1 << 20,
    show_default=True,
    help="Largest deleted file (bytes) whose contents are saved.",
)
@click.option("--tcp-established", is_flag=True, help="Save TCP connections (through TCP_REPAIR).")
@click.option(
    "--ext-unix-sk",
    is_flag=True,
    help="Save datagram Unix sockets connected outside the tree (connected to the name again).",
)
@click.option(
    "--network-lock",
    type=click.Choice(["nftables", "skip"]),
    default="nftables",
    show_default=True,
    help="Hold off the packets of TCP connections with a peer outside the tree until the "
    "restore (skip: none, and the peer's connection dies if it sends meanwhile).",
)
@click.option(
    "--tcp-close",
    is_flag=True,
    help="Save TCP connections without their state, to be restored closed.",
)
def dump(
    pid: int,
    images_dir: str,
    leave_running: bool,
    shell_job: bool,
    ghost_limit: int,
    tcp_established: bool,
    ext_unix_sk: bool,
    network_lock: str,
    tcp_close: bool,
) -> None:
    """Checkpoint process PID, its descendants and all their threads into DIR; the tree is
    killed unless --leave-running."""
    from torpor.api import dump as api_dump

    progress = _Progress("dumping")
    try:
        _run(
            lambda: api_dump(
                pid,
                images_dir,
                leave_running=leave_running,
                shell_job=shell_job,
                ghost_limit=ghost_limit,
                tcp_established=tcp_established,
                ext_unix_sk=ext_unix_sk,
                network_lock=network_lock,
                tcp_close=tcp_close,
                progress=progress,
            )  # fmt: skip
        )
    finally:
        progress.close()


def _inherit_fds(specs) -> dict[str, int]:
    """--inherit-fd's fd[N]:KEY arguments (CRIU's syntax) as KEY -> N."""
    handed = {}
    for spec in specs:
        found = re.fullmatch(r"fd\[(\d+)\]:(.+)", spec)
        if found is None:
            raise click.BadParameter(f"{spec!r} is not fd[N]:KEY", param_hint="--inherit-fd")
        handed[found.group(2)] = int(found.group(1))
    return handed


@cli.command()
@click.option("-D", "--images-dir", required=True, type=click.Path(), help="Image directory.")
@click.option("-d", "--detach", is_flag=True, help="Return once the tree runs again.")
@click.option("--pidfile", type=click.Path(), help="Write the restored PID to this file.")
@click.option("--shell-job", is_flag=True, help="Attach terminal fds to this terminal.")
@click.option(
    "--force-vdso-trampolines",
    is_flag=True,
    help="Redirect vDSO calls through trampolines even when the vDSO matches.",
)
@click.option(
    "--cpu-check",
    type=click.Choice(["warn", "strict"]),
    default="warn",
    help="What to do when this CPU lacks features the dumping CPU had.",
)
@click.option(
    "--no-timens",
    is_flag=True,
    help="Keep the host's monotonic and boot-time clocks instead of carrying on the dumped ones.",
)
@click.option("--pidns", is_flag=True, help="Restore into a new PID namespace.")
@click.option("--trust-images", is_flag=True, help="Restore images other users could have written.")
@click.option("--tcp-close", is_flag=True, help="Restore TCP connections closed.")
@click.option(
    "--inherit-fd",
    "inherit_fd",
    multiple=True,
    metavar="fd[N]:KEY",
    help="Use this command's fd N for the outside end KEY (see `torpor show`).",
)
@click.option(
    "--manage-cgroups",
    type=click.Choice(["soft", "strict", "ignore"]),
    default="soft",
    help="Saved cgroups: join or create them (soft), refuse differing limits (strict), "
    "or stay in this command's (ignore).",
)
@click.option(
    "--verify",
    type=click.Choice(["off", "warn", "strict"]),
    is_flag=False,
    flag_value="warn",
    default=None,
    help="Compare the restored tree with what the dump saw: print what differs (warn, the "
    "default of a bare --verify) or refuse the restore (strict); default $TORPOR_VERIFY, or off.",
)
def restore(
    images_dir, detach, pidfile, shell_job, force_vdso_trampolines, cpu_check, no_timens, pidns,
    trust_images, tcp_close, inherit_fd, manage_cgroups, verify,
) -> None:  # fmt: skip
    """Restore the process tree saved in DIR; without -d, wait for its root and exit with
    the root's status."""
    from torpor.api import restore as api_restore

    progress = _Progress("restoring")
    try:
        pid = _run(
            lambda: api_restore(
                images_dir,
                shell_job=shell_job,
                pidfile=pidfile,
                force_vdso_trampolines=force_vdso_trampolines,
                strict_cpu_check=cpu_check == "strict",
                timens=not no_timens,
                pidns=pidns,
                progress=progress,
                trust_images=trust_images,
                tcp_close=tcp_close,
                inherit_fds=_inherit_fds(inherit_fd),
                manage_cgroups=manage_cgroups,
                verify=verify,
            )
        )
    finally:
        progress.close()
    if detach:
        return
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        sys.exit(128 + os.WTERMSIG(status))
    sys.exit(os.WEXITSTATUS(status))


@cli.command()
@click.option(
    "-D", "--images-dir", type=click.Path(), help="Say whether this host can restore DIR."
)
@click.option(
    "--cpu-check",
    type=click.Choice(["warn", "strict"]),
    default="warn",
    help="As for restore: whether missing CPU features refuse.",
)
@click.option("--no-timens", is_flag=True, help="As for restore: keep the host's clocks.")
@click.option("--pidns", is_flag=True, help="As for restore: into a new PID namespace.")
@click.option("--shell-job", is_flag=True, help="As for restore: onto this terminal.")
@click.option("--trust-images", is_flag=True, help="As for restore: images others could write.")
@click.option("--tcp-close", is_flag=True, help="As for restore: TCP connections closed.")
@click.option(
    "--manage-cgroups",
    type=click.Choice(["soft", "strict", "ignore"]),
    default="soft",
    help="As for restore: what becomes of the saved cgroups.",
)
def check(
    images_dir, cpu_check, no_timens, pidns, shell_job, trust_images, tcp_close, manage_cgroups
) -> None:
    """Show what this kernel supports, one line per feature; with -D, whether this host can
    restore an image directory, one line per finding (exit 1 if it would be refused)."""
    from torpor.checks import print_findings, print_report

    if images_dir is None:
        sys.exit(_run(print_report))
    from torpor.api import check as api_check

    findings = _run(
        lambda: api_check(
            images_dir,
            strict_cpu_check=cpu_check == "strict",
            timens=not no_timens,
            pidns=pidns,
            shell_job=shell_job,
            trust_images=trust_images,
            tcp_close=tcp_close,
            manage_cgroups=manage_cgroups,
        )  # fmt: skip
    )
    sys.exit(print_findings(findings))


@cli.command()
@click.option("-D", "--images-dir", required=True, type=click.Path(), help="Image directory.")
def show(images_dir: str) -> None:
    """Show a readable summary of an image directory."""
    from torpor.show import show as show_images

    _run(lambda: show_images(images_dir))


if __name__ == "__main__":
    main()
