"""The ``ledger`` command line: parses arguments, calls the library, prints. Nothing else.

Exit codes: 0 success, 1 a finding (rejected input, tampering, unjustified decisions),
2 usage or configuration errors. Errors are one line on stderr, never a traceback."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

import projections
from ledger import __version__, bootstrap
from ledger.adapters.files import check_target, write_private_file
from ledger.app.service import Ledger
from ledger.config import DEFAULT_CONTROLLERS, Settings
from ledger.contracts.compatibility import check_all
from ledger.domain.chain_check import DigestMismatch
from ledger.domain.clock import ledger_clock
from ledger.domain.errors import (
    InvalidSubject,
    KafkaLogNeeded,
    LedgerError,
    NoEventLog,
    NoLedger,
    PolicyUnavailable,
    SubjectProblem,
    TargetExists,
    UnknownController,
    UsageError,
)
from ledger.domain.intake import iter_lines
from ledger.domain.retention.rules import ACTIONS
from ledger.domain.subjects import SubjectSelector
from ledger.domain.timeutil import format_micros, parse_time_input

# Imported where used, to keep `ledger --help` fast: anything with DuckDB or Arrow (projections.*
# but the package itself, ~100 ms), the Kafka adapter (25 ms), the audit toolkit (20 ms), the
# demo (13 ms), proofs (7 ms) and the erasure audit (3 ms).
if TYPE_CHECKING:
    from ledger.app.auditing import Auditor, PartitionsReport

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)


class Failure(click.ClickException):
    """One clear line on stderr and a chosen exit code."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click reads it per instance


# The flag of each input a library error can be about (UsageError.parameter, a Python name).
FLAGS: dict[str, str] = {
    "data_dir": "--data", "log": "--log", "now": "--now", "schema_registry": "--schema-registry",
    "worker": "--worker", "into": "--into", "out": "--out", "html": "--html",
    "as_of": "--as-of", "before": "--before", "channel": "--channel",
    "controller": "--controller", "policy": "--policy", "rebuild": "--rebuild",
    "sign": "--sign", "key": "--key", "checkpoint": "--checkpoint", "origin": "--origin",
    "name": "--name", "message_id": "ID", "reason": "--reason", "at": "--at", "kind": "--kind",
    "directory": "DIR",
    "notice_id": "--id", "version": "--version", "language": "--language",
    "title": "--title",
    "checkpoint_key": "ledger.toml audit.checkpoint_key",
}
# How the CLI has always worded a subject named wrongly (InvalidSubject.problem).
SUBJECT_PROBLEMS: dict[SubjectProblem, str] = {
    "none": "give a SUBJECT pseudonym, or --email/--account with --controller",
    "both": "give a SUBJECT pseudonym, or --email/--account with --controller",
    "no-controller": "--email/--account need --controller (the pseudonym is per controller)",
}


def flag(parameter: str) -> str:
    return FLAGS.get(parameter, parameter)  # e.g. a file name (ledger.toml) stays as it is


def cli_message(e: LedgerError) -> str:
    """A library error in the CLI's words: the flags the user typed where the library names
    its inputs by their Python names."""
    match e:
        case UnknownController():  # every command names its controller with --controller
            return f"--controller: {e}"
        case PolicyUnavailable():
            return (f"controller {e.controller!r}: its policy {e.policy[:200]!r} cannot be loaded "
                    f"({e.cause}): run `ledger controller set-policy {e.controller} POLICY`, or "
                    "give --controller OTHER to work on the other controllers")
        case InvalidSubject():
            return SUBJECT_PROBLEMS.get(e.problem, str(e))
        case TargetExists():
            return f"{flag(e.parameter or 'out')}: {e.target} exists (use --force to replace it)"
        case NoLedger():
            return f"no ledger in {e.data_dir}: run `ledger init` (or `ledger --data DIR init`)"
        case NoEventLog():
            return f"no event log at {e.path}: is --data the ledger's data directory?"
        case DigestMismatch():
            return f"{e.what}: run `ledger audit verify --digest`"
        case KafkaLogNeeded():
            return "this command needs --log kafka://host:port/topic (or LEDGER_LOG)"
        case UsageError(parameter=str(parameter)):
            return e.about(flag(parameter)) + e.in_words(flag)[len(e.about(parameter)):]
    return e.in_words(flag)


def handles_errors(fn: F) -> F:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LedgerError as e:
            raise Failure(cli_message(e), e.exit_code) from None
        except OSError as e:
            message = f"{e.strerror or e}: {e.filename}" if e.filename else str(e)
            if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                message += " (the disk may be full: free space and retry)"
            raise Failure(message, 2) from None

    return wrapper  # type: ignore[return-value]


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def counted(n: int, word: str) -> str:
    """'1 erasure', '2 erasures', '0 findings'."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


@contextmanager
def opened(ctx: click.Context) -> Iterator[Ledger]:
    ledger = Ledger.from_settings(ctx.obj)
    try:
        yield ledger
    finally:
        ledger.close()


# Off a terminal (a log file, a CI job) progress is a plain line on stderr this often.
PROGRESS_LINE_SECONDS = 5.0


class ProgressLines:
    """Progress without a terminal: one line on stderr at most every few seconds, and none
    for a command that finishes sooner."""

    def __init__(self, total: int | None, label: str, unit: str) -> None:
        self.total, self.label, self.unit = total or None, label, unit
        self.done = 0
        self.started = self.last = time.monotonic()

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last < PROGRESS_LINE_SECONDS:
            return
        self.last = now
        of = f" of {self.total:,}" if self.total else ""
        rate = self.done / (now - self.started)
        click.echo(f"{self.label}: {self.done:,}{of} {self.unit} ({rate:,.0f} {self.unit}/s)",
                   err=True)


@contextmanager
def progress_bar(total: int | None, label: str, unit: str = "events",
                 ) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal; off one, a line on stderr every few seconds."""
    if not sys.stderr.isatty():
        yield ProgressLines(total, label, unit).update
        return
    with click.progressbar(length=total or 0, label=label, file=sys.stderr,
                           show_pos=True, show_eta=bool(total)) as bar:
        yield bar.update


@contextmanager
def work_progress(label: str, every: float = 3.0) -> Iterator[Callable[[int, int], None]]:
    """Progress on stderr for work whose total the library learns as it goes, called with
    (done, total): a bar on a terminal; elsewhere (a CI log, a pipe) a line every few seconds,
    so a long run is never silent."""
    tty = sys.stderr.isatty()
    started = last = time.perf_counter()
    shown = [False]

    def update(done: int, total: int) -> None:
        nonlocal last
        now = time.perf_counter()
        if now - last < (0.1 if tty else every) and done < total:
            return
        last = now
        share = done / total if total else 1.0
        rate = done / (now - started) if now > started else 0.0
        if tty:
            bar = "#" * int(share * 30)
            sys.stderr.write(f"\r{label} [{bar:<30}] {share:4.0%} {done:,}/{total:,} ({rate:,.0f}/s)")
            shown[0] = True
        elif now - started >= every:  # a short run prints nothing
            sys.stderr.write(f"{label}: {done:,} of {total:,} ({share:.0%}, {rate:,.0f}/s)\n")
        sys.stderr.flush()

    try:
        yield update
    finally:
        if shown[0]:
            sys.stderr.write("\n")
            sys.stderr.flush()


# The options of `ledger` itself (given before the command) and their metavars.
GLOBAL_OPTIONS = {"--data": "DIR", "--log": "URL", "--now": "T", "--schema-registry": "URL"}


def command_path(ctx: click.Context | None) -> str:
    """'ledger audit prove': the command as typed, whatever name the process was run by."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(["ledger", *reversed(names)])


def usage_line(e: click.UsageError) -> str:
    """A click usage error as one line (no usage block), with a hint for a global option given
    after the command."""
    if (isinstance(e, click.NoSuchOption) and e.option_name in GLOBAL_OPTIONS
            and e.ctx is not None and e.ctx.parent is not None):
        command = command_path(e.ctx).removeprefix("ledger ")
        return (f"{e.option_name} is a global option: put it before the command "
                f"(ledger {e.option_name} {GLOBAL_OPTIONS[e.option_name]} {command} ...)")
    message = e.message if isinstance(e, click.NoSuchOption | click.NoSuchCommand) else e.format_message()
    message = " ".join(message.split()).rstrip(".")
    possibilities = getattr(e, "possibilities", None)
    if possibilities:
        message += f"; did you mean {' or '.join(repr(p) for p in possibilities)}?"
    return f"{message} (see '{command_path(e.ctx)} --help')"


class LedgerGroup(click.Group):
    """The top-level group: every click usage error, of any command, is one line on stderr
    and exit 2 (a bare `ledger` or group still prints its help)."""

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            raise Failure(usage_line(e), 2) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as e:
            raise Failure(usage_line(e), 2) from None


@click.group(cls=LedgerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ledger")
@click.option("--data", "data_dir", metavar="DIR", envvar="LEDGER_DATA",
              help="Data directory [env LEDGER_DATA; default ./ledger-data].")
@click.option("--log", "log_url", metavar="URL", envvar="LEDGER_LOG",
              help="Event log: 'embedded' (default) or kafka://host:port/topic [env LEDGER_LOG].")
@click.option("--now", metavar="T", envvar="LEDGER_NOW",
              help="The ledger clock, ISO-8601 (a bare date is 00:00 UTC) [env LEDGER_NOW; default: the wall clock].")
@click.option("--schema-registry", metavar="URL", envvar="LEDGER_SCHEMA_REGISTRY",
              help="Kafka: a Confluent-compatible schema registry for schema ids [env LEDGER_SCHEMA_REGISTRY; default: built-in ids].")
@click.pass_context
def main(ctx: click.Context, data_dir: str | None, log_url: str | None, now: str | None,
         schema_registry: str | None) -> None:
    """consent-ledger: an event-sourced consent and activity ledger.

    Upstream apps publish events (JSON lines or the Python API); the ledger pseudonymises
    subjects, encrypts personal data per subject and appends Avro events to a hash-chained,
    append-only log.
    """
    ctx.obj = Settings.from_env(data_dir, log_url, now, schema_registry)
    # Every file this process creates is private (0600), whatever the caller's umask: the
    # library creates its own files so, and this covers any other (SPEC §7a).
    saved = os.umask(0o077)
    os.umask(saved | 0o077)
    ctx.call_on_close(lambda: os.umask(saved))


@main.command()
@click.option("--controller", "controllers", multiple=True, metavar="NAME",
              help="Controller to create (repeatable) [default: coegi and cowrite].")
@json_option
@click.pass_obj
@handles_errors
def init(settings: Settings, controllers: tuple[str, ...], as_json: bool) -> None:
    """Create the data directory: config, master key (0600), key vault, log."""
    path, created = Ledger.init(settings.data_dir, controllers or DEFAULT_CONTROLLERS)
    if as_json:
        emit_json({"data_dir": str(path), "created": created})
    else:
        click.echo(f"{'Created' if created else 'Already initialised:'} {path}")


@main.group()
def controller() -> None:
    """Manage controllers (tenants)."""


@contextmanager
def controller_named(name: str) -> Iterator[None]:
    """NAME is an argument of the controller commands: an unknown one is not --controller's,
    and their POLICY argument is not --policy."""
    try:
        yield
    except UnknownController as e:
        raise Failure(str(e), 2) from None


@controller.command("add")
@click.argument("name")
@click.option("--policy", metavar="POLICY",
              help="A shipped policy's name or a policy TOML file (stored as an absolute path) "
                   "[default: the shipped policy named NAME].")
@json_option
@click.pass_context
@handles_errors
def controller_add(ctx: click.Context, name: str, policy: str | None, as_json: bool) -> None:
    """Add a controller with its own pseudonym secret and a validated policy."""
    with opened(ctx) as ledger:
        added = ledger.add_controller(name, policy)
        setting = ledger.config.controllers[name].policy
    if as_json:
        emit_json({"controller": name, "policy": setting, "added": added})
    else:
        click.echo(f"{'Added' if added else 'Already present:'} {name}\tpolicy={setting}")


@controller.command("set-policy")
@click.argument("name")
@click.argument("policy")
@json_option
@click.pass_context
@handles_errors
def controller_set_policy(ctx: click.Context, name: str, policy: str, as_json: bool) -> None:
    """Give controller NAME another policy (a shipped name or a policy TOML file), validated
    first; ledger.toml is replaced atomically."""
    with opened(ctx) as ledger, controller_named(name):
        try:
            setting = ledger.set_policy(name, policy)
        except UsageError as e:
            if e.parameter != "policy":
                raise
            raise Failure(f"POLICY: {e.reason}", 2) from None
    if as_json:
        emit_json({"controller": name, "policy": setting})
    else:
        click.echo(f"Set {name}\tpolicy={setting}")


@controller.command("remove")
@click.argument("name")
@json_option
@click.pass_context
@handles_errors
def controller_remove(ctx: click.Context, name: str, as_json: bool) -> None:
    """Remove controller NAME from ledger.toml; refused while the log holds any of its
    events."""
    with opened(ctx) as ledger, controller_named(name):
        policy = ledger.remove_controller(name)
    if as_json:
        emit_json({"controller": name, "policy": policy, "removed": True})
    else:
        click.echo(f"Removed {name}")


@controller.command("list")
@json_option
@click.pass_context
@handles_errors
def controller_list(ctx: click.Context, as_json: bool) -> None:
    """List controllers and their policies."""
    with opened(ctx) as ledger:
        rows = [{"controller": c.name, "policy": c.policy} for c in ledger.config.controllers.values()]
    if as_json:
        emit_json(rows)
    else:
        for r in rows:
            click.echo(f"{r['controller']}\tpolicy={r['policy']}")


workers_option = click.option(
    "--workers", type=click.IntRange(min=1, max=64), default=DEFAULT_WORKERS, show_default=True,
    help="Processes that validate, encrypt and encode in parallel (used for long inputs only).")


@main.command()
@click.argument("file", type=click.File("rb"))
@workers_option
@json_option
@click.pass_context
@handles_errors
def publish(ctx: click.Context, file: Any, workers: int, as_json: bool) -> None:
    """Validate and append JSON-lines events from FILE (or - for stdin).

    Prints accepted / duplicate / rejected counts. Each rejected line goes to the dead letters
    with its line number and reason; it never stops the rest. A line whose event_id is in the
    log with other content is a conflict: rejected (and counted among the rejected). Exit 1 if
    any line was rejected.
    """
    name = getattr(file, "name", "-")
    origin = "-" if name in ("<stdin>", "-") else Path(name).name
    with opened(ctx) as ledger, progress_bar(None, "Publishing") as progress:
        report = ledger.publish(iter_lines(file), origin=origin, progress=progress, workers=workers)
    if as_json:
        emit_json(report.as_dict())
    else:
        conflicts = (f" ({counted(report.conflicts, 'conflict')})"
                     if report.conflicts else "")
        click.echo(f"accepted {report.accepted}, duplicates {report.duplicates}, "
                   f"rejected {report.rejected}{conflicts}")
        for r in report.rejects:
            click.echo(f"  line {r.line}: {r.reason}", err=True)
        if report.rejected > len(report.rejects):
            click.echo(f"  ... and {report.rejected - len(report.rejects)} more in the dead letters",
                       err=True)
    if report.rejected:
        ctx.exit(1)


@main.group("dead-letters", invoke_without_command=True)
@json_option
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--decrypt", is_flag=True,
              help="Also show the rejected input, where its key still exists (else why not: "
                   "erased, sealed, purged).")
@click.pass_context
@handles_errors
def dead_letters(ctx: click.Context, as_json: bool, limit: int, decrypt: bool) -> None:
    """List rejected input: when, where from, which line and why (the input stays encrypted,
    under the subject's key where the subject could be derived, else under the dead-letter key
    of its month)."""
    if ctx.invoked_subcommand is not None:
        return
    with opened(ctx) as ledger:
        entries = list(ledger.dead_letters.read(decrypt=decrypt))[-limit:]
    if as_json:
        emit_json(entries)
    elif not entries:
        click.echo("no dead letters")
    else:
        for e in entries:
            click.echo(f"{e['rejected_at']}  {e['origin']}:{e['line']}  {e['reason']}")
            if decrypt:
                shown = (json.dumps(e["input"], ensure_ascii=False)[:2000]
                         if e["input_status"] == "readable" else f"unreadable ({e['input_status']})")
                click.echo(f"    input: {shown}")


@dead_letters.command("purge")
@click.option("--before", required=True, metavar="T",
              help="Destroy rejected input older than T (ISO-8601; a bare date is 00:00 UTC).")
@click.option("--dry-run", is_flag=True, help="Count only; change nothing.")
@json_option
@click.pass_context
@handles_errors
def dead_letters_purge(ctx: click.Context, before: str, dry_run: bool, as_json: bool) -> None:
    """Drop the dead letters rejected before T (the file is rewritten atomically) and destroy
    the dead-letter keys of every month wholly before T (and the old global key once no entry
    needs it). The sweep does the same after the policy's dead_letter_retention."""
    cutoff = parse_time_input(before, "before")
    with opened(ctx) as ledger:
        report = ledger.dead_letters.purge(cutoff, dry_run=dry_run)
    if as_json:
        emit_json(report.as_dict())
    else:
        entries = f"{report.entries} dead letter{'' if report.entries == 1 else 's'}"
        keys = f"{report.keys} key{'' if report.keys == 1 else 's'}"
        click.echo(f"{'Dry run: would purge' if dry_run else 'Purged'} {entries} and "
                   f"{'destroy' if dry_run else 'destroyed'} {keys} "
                   f"(rejected before {format_micros(cutoff)})")


@main.group()
def subject() -> None:
    """Subjects: pseudonyms."""


@subject.command("id")
@click.option("--email", help="The person's e-mail address.")
@click.option("--account", help="The person's account id in an app.")
@click.option("--controller", required=True, help="Controller whose secret keys the pseudonym.")
@json_option
@click.pass_context
@handles_errors
def subject_id(ctx: click.Context, email: str | None, account: str | None, controller: str,
               as_json: bool) -> None:
    """Print the pseudonym of a person for a controller."""
    with opened(ctx) as ledger:
        pid = ledger.subject_id(controller, email=email, account=account)
    if as_json:
        emit_json({"controller": controller, "subject": pid})
    else:
        click.echo(pid)


@main.group()
def schemas() -> None:
    """Avro event schemas."""


@schemas.command("check")
@json_option
@handles_errors
def schemas_check(as_json: bool) -> None:
    """Prove every schema version reads the events written with the previous versions."""
    results = check_all()
    if as_json:
        emit_json([r.as_dict() for r in results])
    else:
        for r in results:
            mark = "ok  " if r.ok else "FAIL"
            click.echo(f"{mark} {r.type}: v{r.writer_version} -> v{r.reader_version}"
                       f"{'' if r.ok else '  ' + r.problem}")
        ok = sum(r.ok for r in results)
        click.echo(f"{ok}/{len(results)} compatible")
    if not all(r.ok for r in results):
        sys.exit(1)


@main.command()
@click.option("--subjects", type=click.IntRange(min=1, max=5_000_000), default=1000,
              show_default=True, help="People to simulate (split over both controllers).")
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed (same seed, same history).")
@click.option("--years", type=click.IntRange(min=1, max=20), default=5, show_default=True,
              help="Length of the simulated history, ending at the ledger clock.")
@click.option("--sweeps", type=click.Choice(["monthly", "end"]), default="monthly",
              show_default=True,
              help="Run the retention sweep at the start of every simulated month, or only "
                   "once at the end (faster).")
@workers_option
@json_option
@click.pass_context
@handles_errors
def demo(ctx: click.Context, subjects: int, seed: int, years: int, sweeps: str, workers: int,
         as_json: bool) -> None:
    """Generate a realistic multi-year history for both seed controllers and publish it."""
    from ledger.demo.runner import history_days, run_demo

    settings: Settings = ctx.obj
    Ledger.init(settings.data_dir)
    with opened(ctx) as ledger, progress_bar(history_days(ledger, years), "Publishing history",
                                             unit="days") as progress:
        summary = run_demo(ledger, subjects=subjects, seed=seed, years=years, progress=progress,
                           workers=workers, monthly_sweeps=sweeps == "monthly")
    if as_json:
        emit_json(summary)
    else:
        click.echo(format_summary(summary))


def format_summary(summary: dict[str, Any]) -> str:
    if summary.get("already_published"):
        return "\n".join(format_republished(summary))
    lines = [
        f"Demo history {summary['from']} .. {summary['to']} in {summary['data_dir']}",
        f"  events: accepted {summary['accepted']}, duplicates {summary['duplicates']}, "
        f"rejected {summary['rejected']} ({summary['events_per_second']:,.0f} events/s)",
    ]
    for controller, n in summary["subjects"].items():
        lines.append(f"  {controller}: {n} subjects")
    lines.append("  by type: " + ", ".join(f"{t} {n}" for t, n in summary["by_type"].items()))
    if "projections" in summary:
        lines.extend(format_projection_summary(summary["projections"]))
    lines.extend(format_sweep_summary(summary))
    return "\n".join(lines)


def format_republished(summary: dict[str, Any]) -> list[str]:
    """The demo run again into the same directory: no rate, and one subject count (the
    projected tables')."""
    lines = [f"Demo history {summary['from']} .. {summary['to']} in {summary['data_dir']}: "
             f"already published: 0 accepted, {summary['duplicates']:,} duplicates"]
    if "projections" in summary:
        lines.extend(format_projection_summary(summary["projections"])[1:])
    lines.extend(format_sweep_summary(summary))
    return lines


def format_sweep_summary(summary: dict[str, Any]) -> list[str]:
    if "sweep" not in summary:
        return []
    sweep = summary["sweep"]
    return [f"Retention sweep at {sweep['as_of']}: decisions "
            + ", ".join(f"{a} {n}" for a, n in sweep["decisions"].items()),
            "  appended: " + (", ".join(f"{t} {n}" for t, n in sweep["appended"].items())
                              or "nothing") + f"; keys destroyed: {sweep['keys_shredded']}"]

# --- projections (SPEC §4): project, replay, query ---------------------------------------


@contextmanager
def rate_bar(total: int, label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar showing events/s on a terminal (full when the work completes: a replay
    as of T reads fewer records than the log holds); off one, a line every few seconds."""
    if not sys.stderr.isatty():
        yield ProgressLines(total, label, "events").update
        return

    started = time.perf_counter()
    done = [0]

    def rate(_: object) -> str:
        elapsed = time.perf_counter() - started
        return f"{done[0] / elapsed:,.0f} events/s" if elapsed > 0 else ""

    with click.progressbar(length=max(total, 1), label=label, file=sys.stderr, show_pos=True,
                           item_show_func=rate) as bar:
        def update(n: int) -> None:
            done[0] += n
            bar.update(n, done[0])

        yield update
        length = bar.length or 0
        if bar.pos < length:  # completed: every record the work had to read was read
            bar.update(length - bar.pos, done[0])


def format_projection_summary(p: dict[str, Any]) -> list[str]:
    lines = [(f"Projections: {p['projection']['events']:,} events projected "
              f"({p['projection']['events_per_second']:,} events/s)")]
    for controller, c in p["by_controller"].items():
        lines.append(
            f"  {controller}: {c['subjects']} subjects, {c['active']} active / {c['inactive']} "
            f"inactive (no activity for {c['inactive_after']}); consents "
            f"{c['consents_granted']} granted, {c['consents_withdrawn']} withdrawn, "
            f"{c['objections']} objections")
    return lines


def _report_line(report: Any) -> str:
    errors = f", {report.errors} to projection_errors" if report.errors else ""
    offsets = getattr(report, "offsets", None)  # a partitioned log: where each partition is
    where = (f"next offsets {' '.join(f'{p}:{o}' for p, o in offsets.items())}"
             if offsets is not None else f"position {report.position:,}")
    return (f"projected {report.events:,} events{errors}; {where} "
            f"({report.seconds:.2f} s, {report.events_per_second:,.0f} events/s)")


@main.command()
@click.option("--rebuild", is_flag=True, help="Empty the tables and project the whole log again.")
@click.option("--follow", is_flag=True, help="Keep projecting new events until interrupted.")
@click.option("--permissions", "with_permissions", is_flag=True,
              help="Also recompute the permissions table (what `permits` answers).")
@click.option("--fingerprint", "show_fingerprint", is_flag=True,
              help="Print a content hash of all tables (same log prefix, same hash).")
@click.option("--db", "db", metavar="FILE", type=click.Path(dir_okay=False),
              help="Projections file [default: DATA/projections.duckdb; on Kafka "
                   "DATA/projections.TOPIC[.shard-I-of-N].duckdb].")
@click.option("--worker", "worker_spec", metavar="I/N",
              help="Kafka: project the partitions p with p % N == I into this worker's shard.")
@json_option
@click.pass_context
@handles_errors
def project(ctx: click.Context, rebuild: bool, follow: bool, with_permissions: bool,
            show_fingerprint: bool, db: str | None, worker_spec: str | None,
            as_json: bool) -> None:
    """Bring the DuckDB projections up to date with the log.

    Incremental from the stored log position (on Kafka: one offset per partition); --rebuild
    starts from zero. Events that do not decode go to the projection_errors table and never
    stop the projector. On Kafka, N workers (--worker 0/N .. N-1/N) share the partitions,
    each with its own shard; `ledger query --shards` reads the shards as one.
    """
    from ledger.app.permissions import refresh_permissions
    from ledger.app.sweep import last_sweep_decisions
    from projections.engine.workers import Worker

    if follow and with_permissions:
        raise UsageError("--permissions does not go with --follow (it is recomputed once)")
    worker = Worker.parse(worker_spec) if worker_spec else None
    with opened(ctx) as ledger:
        path = projections.projections_path(ledger, db, worker)
        redecide = last_sweep_decisions(ledger)
        # A partitioned log's positions are not a count: no total for the progress bar.
        total = 0 if ledger.log.partitioned else ledger.log.head().position
        report: Any
        if follow:
            stop = threading.Event()
            signal.signal(signal.SIGTERM, lambda *_: stop.set())
            if rebuild:
                projections.project(ledger, path=path, rebuild=True, worker=worker,
                                    redecide=redecide)
            try:
                report = projections.follow(
                    ledger, path=path, stop=stop, worker=worker,
                    on_progress=lambda r: click.echo(_report_line(r), err=True))
            except KeyboardInterrupt:
                stop.set()
                return
        else:
            pending = max(0, total - (0 if rebuild else projections.stored_position(path)))
            with rate_bar(pending, "Projecting") as progress:
                report = projections.project(ledger, path=path, rebuild=rebuild,
                                             progress=progress, worker=worker, redecide=redecide)
            if with_permissions:
                refresh_permissions(ledger, path)
        fp = projections.fingerprint(path, ledger.registry) if show_fingerprint else None
    if as_json:
        emit_json({**report.as_dict(), "file": str(path),
                   **({"fingerprint": fp} if fp else {})})
        return
    click.echo(_report_line(report))
    if fp:
        click.echo(f"fingerprint {fp}")


@main.command()
@click.option("--as-of", "as_of", required=True, metavar="T",
              help="Knowledge time: only events recorded at or before T (ISO-8601).")
@click.option("--into", "into", required=True, metavar="FILE", type=click.Path(dir_okay=False),
              help="The DuckDB file to build (not the live projections).")
@click.option("--force", is_flag=True, help="Replace FILE if it exists.")
@click.option("--fingerprint", "show_fingerprint", is_flag=True, help="Print the content hash.")
@json_option
@click.pass_context
@handles_errors
def replay(ctx: click.Context, as_of: str, into: str, force: bool, show_fingerprint: bool,
           as_json: bool) -> None:
    """Build the projections as they were known at T into a separate DuckDB file."""
    t = parse_time_input(as_of, "as_of")
    with opened(ctx) as ledger, rate_bar(ledger.log.head().position, "Replaying") as progress:
        report = projections.replay(ledger, t, into, force=force, progress=progress)
        fp = projections.fingerprint(into, ledger.registry) if show_fingerprint else None
    if as_json:
        emit_json({**report.as_dict(), "as_of": format_micros(t), "file": into,
                   **({"fingerprint": fp} if fp else {})})
        return
    click.echo(f"{_report_line(report)} as of {format_micros(t)} into {into}")
    if fp:
        click.echo(f"fingerprint {fp}")


@main.command()
@click.argument("sql")
@click.option("--db", "db", metavar="FILE", type=click.Path(dir_okay=False),
              help="Projections file, e.g. a replay [default: DATA/projections.duckdb].")
@click.option("--shards", "shards", metavar="GLOB", multiple=True,
              help="Kafka workers' shard files (a glob, repeatable), queried as one.")
@click.option("--json", "as_json", is_flag=True, help="Rows as a JSON array of objects.")
@click.option("--csv", "as_csv", is_flag=True,
              help="Rows as CSV with a header line; no rows is exit 1 unless --allow-empty.")
@click.option("--allow-empty", is_flag=True,
              help="With --csv: print only the header when there are no rows (exit 0).")
@click.pass_context
@handles_errors
def query(ctx: click.Context, sql: str, db: str | None, shards: tuple[str, ...], as_json: bool,
          as_csv: bool, allow_empty: bool) -> None:
    """Run SQL over the projections (read-only). Tables: see docs/projections.md.

    For scripts, prefer --json (an empty result is `[]`); --csv with no rows exits 1 with
    "no rows" on stderr, so `S=$(ledger query ... --csv | tail -1)` never yields the header.
    """
    if as_json and as_csv:
        raise Failure("--json and --csv exclude each other", 2)
    if db and shards:
        raise Failure("--db and --shards exclude each other", 2)
    settings: Settings = ctx.obj
    if shards:
        from projections.engine.workers import expand, query_shards

        result = projections.QueryResult(*query_shards(expand(shards), sql))
    else:
        path = Path(db) if db else settings.data_dir / bootstrap.projections_file(settings)
        result = projections.query(path, sql)
    if as_json:
        emit_json([dict(zip(result.columns, row, strict=True)) for row in result.rows])
    elif as_csv:
        if not result.rows and not allow_empty:
            raise Failure("no rows (give --allow-empty to print only the header)", 1)
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(result.columns)
        writer.writerows(result.rows)
    else:
        click.echo(format_table(result.columns, result.rows))


@main.group("export")
def export_group() -> None:
    """Copies of the projections for other tools."""


@export_group.command("parquet")
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False))
@click.option("--as-of", "as_of", metavar="T",
              help="Knowledge time: the tables as known at T (ISO-8601) [default: now].")
@json_option
@click.pass_context
@handles_errors
def export_parquet(ctx: click.Context, directory: str, as_of: str | None, as_json: bool) -> None:
    """Write each public projection table to DIR/<table>.parquet with a manifest.json.

    DIR appears complete or not at all; an existing DIR must be empty or an earlier export,
    which is then replaced in one step.
    """
    from ledger.app.parquet import export_parquet as run_export

    t = parse_time_input(as_of, "as_of") if as_of else None
    with opened(ctx) as ledger:
        manifest = run_export(ledger, directory, as_of=t)
    if as_json:
        emit_json(manifest)
        return
    rows = sum(t["rows"] for t in manifest["tables"])
    click.echo(f"exported {counted(len(manifest['tables']), 'table')} ({rows:,} rows) at log "
               f"position {manifest['log_position']:,} as of {manifest['as_of']} into "
               f"{manifest['directory']}")
    click.echo(f"fingerprint {manifest['fingerprint']}")


def format_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


# --- retention (SPEC §5): decisions, sweep, explain ---------------------------------------

as_of_option = click.option(
    "--as-of", "as_of", metavar="T",
    help="Knowledge time: decide with only what was recorded by T [default: the ledger clock].")
controller_option = click.option("--controller", metavar="C", help="Only this controller.")
policy_option = click.option(
    "--policy", "policy_path", metavar="PATH",
    help="Use this policy TOML instead of the controller's configured one (with --controller).")


def _clock(as_of: str | None) -> int | None:
    return None if as_of is None else parse_time_input(as_of, "as_of")


@main.command()
@as_of_option
@controller_option
@policy_option
@click.option("--action", "actions", multiple=True,
              type=click.Choice(ACTIONS),
              help="Only decisions with this action (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="A JSON list of decision objects.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header line.")
@click.pass_context
@handles_errors
def decisions(ctx: click.Context, as_of: str | None, controller: str | None,
              policy_path: str | None, actions: tuple[str, ...], as_json: bool, as_csv: bool) -> None:
    """Retention decisions for every subject: keep, notify, pseudonymise, erase or hold, with
    the due date, the rule, the policy (and its hash) and the evidence event ids."""
    from ledger.app.decisions import decisions_at

    if as_json and as_csv:
        raise Failure("--json and --csv exclude each other", 2)
    with opened(ctx) as ledger:
        table = decisions_at(ledger, _clock(as_of), controller, policy_path)
    # The listing leads with the subject: its key first, then the decision's own order.
    rows = [{"subject": d.subject, **d.as_dict()} for d in table.decisions
            if not actions or d.action in actions]
    if as_json:
        emit_json(rows)
    elif as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        columns = ["subject", "controller", "action", "due_at", "rule", "policy", "policy_hash",
                   "evidence"]
        writer.writerow(columns)
        writer.writerows([[*(r[c] for c in columns[:-1]), " ".join(r["evidence"])] for r in rows])
    else:
        columns = ["controller", "subject", "action", "due_at", "rule"]
        click.echo(format_table(columns, [tuple(r[c] for c in columns) for r in rows]))
        counts = table.counts()
        click.echo(", ".join(f"{a} {n}" for a, n in counts.items()), err=True)


@main.command()
@click.option("--dry-run", is_flag=True, help="Show what is due without appending or shredding.")
@controller_option
@policy_option
@json_option
@click.pass_context
@handles_errors
def sweep(ctx: click.Context, dry_run: bool, controller: str | None, policy_path: str | None,
          as_json: bool) -> None:
    """Apply what is due at the ledger clock (--now): deletion notices, pseudonymisation,
    erasure by destroying keys (except categories under a legal hold), yearly reviews.
    Record first, then act: the events are durable before any key is destroyed or sealed;
    an explicit --now behind the log is refused before any effect (exit 2).
    Running it twice at the same clock changes nothing the second time."""
    from ledger.app.sweep import sweep as run_sweep

    with opened(ctx) as ledger:
        report = run_sweep(ledger, dry_run=dry_run, controller=controller, policy_path=policy_path)
    if as_json:
        emit_json(report.as_dict())
        if report.checkpoint is not None and report.checkpoint.error is not None:
            ctx.exit(1)
        return
    d = report.as_dict()
    click.echo(f"{'Dry run: due' if dry_run else 'Swept'} at {d['as_of']}: "
               + ", ".join(f"{a} {n}" for a, n in d["decisions"].items()))
    if not dry_run:
        appended = ", ".join(f"{t} {n}" for t, n in d["appended"].items()) or "nothing"
        click.echo(f"  appended: {appended}; keys destroyed: {d['keys_shredded']}; "
                   f"subjects sealed: {d['subjects_sealed']}; "
                   f"dead letters purged: {d['dead_letters_purged']}")
    cp = report.checkpoint
    if cp is not None and cp.error is None:
        done = "written to" if cp.written else "already in"
        click.echo(f"  checkpoint of {cp.size:,} records signed by {cp.signed_by} {done} {cp.path}")
    if cp is not None and cp.error is not None:
        click.echo(f"checkpoint not signed: {cp.error}; the sweep's effects stand, the next "
                   "sweep signs again", err=True)
        ctx.exit(1)


@main.command()
@click.argument("subject", required=False)
@click.option("--email", help="The person's e-mail address (with --controller).")
@controller_option
@as_of_option
@policy_option
@json_option
@click.pass_context
@handles_errors
def explain(ctx: click.Context, subject: str | None, email: str | None, controller: str | None,
            as_of: str | None, policy_path: str | None, as_json: bool) -> None:
    """A subject's timeline and the rule chain behind its retention decision."""
    from ledger.app.decisions import controller_policies, projections_as_of
    from ledger.app.explain import explain as explain_subject
    from ledger.app.permits import resolve_subject

    with opened(ctx) as ledger, projections_as_of(ledger, _clock(as_of)) as (con, now):
        ref = resolve_subject(ledger, con, subject=subject, email=email,
                              controller=controller)
        ctrl, pid = ref.controller, ref.subject
        policy = controller_policies(ledger, ctrl, policy_path)[ctrl]
        result = explain_subject(ledger, con, ctrl, pid, policy, now)
    if as_json:
        emit_json(result)
        return
    click.echo(f"{ctrl} subject {pid} as of {result['as_of']}")
    for e in result["timeline"]:
        click.echo(f"  {e['occurred_at'][:19]}  {e['type']:<22} {e['source']:<10} "
                   f"recorded {e['recorded_at'][:10]}  {e['event_id']}")
    click.echo("Rule chain:")
    for line in result["rule_chain"]:
        click.echo(f"  - {line}")

# --- the outbox: messages owed to people, and the mailer's reports -------------------------


@main.group()
def outbox() -> None:
    """Messages owed to people (deletion notices, answers to rights requests) and the reports
    of their delivery, for operators without a mailer integration."""


def _outbox_time(at: str | None) -> int | None:
    return None if at is None else parse_time_input(at, "at")


@outbox.command("list")
@click.option("--kind", type=click.Choice(["deletion_notice", "erasure_done", "extract_ready"]),
              help="Only messages of this kind.")
@click.option("--json", "as_json", is_flag=True,
              help="A JSON list of messages, with the policy clause to quote.")
@click.pass_context
@handles_errors
def outbox_list(ctx: click.Context, kind: str | None, as_json: bool) -> None:
    """The pending messages, oldest first, each with the person's decrypted contact address
    (shown here only; it is never logged or projected)."""
    from ledger.app.outbox import pending

    with opened(ctx) as ledger:
        messages = [m.as_dict() for m in pending(ledger, kind)]
    if as_json:
        emit_json(messages)
        return
    columns = ["message_id", "kind", "controller", "subject", "due_at", "contact"]
    rows = [(m["message_id"], m["kind"], m["controller"], m["subject"][:16] + "…",
             m["due_at"][:10], m["contact"] or f"({m['contact_note']})") for m in messages]
    click.echo(format_table(columns, rows))


def _outbox_line(outcome: Any) -> str:
    what = "delivery" if outcome.report == "delivered" else "failed attempt"
    if outcome.status == "duplicate":
        return f"{outcome.kind} {outcome.message_id}: this {what} is already recorded (duplicate)"
    after = ("" if outcome.report == "delivered" else
             "; finally failed, no retries left" if outcome.final else "; to be retried")
    return (f"{outcome.kind} {outcome.message_id}: {what} at {format_micros(outcome.at)} "
            f"recorded at position {outcome.position}{after}")


@outbox.command("delivered")
@click.argument("message_id", metavar="ID")
@click.option("--at", metavar="T", help="When it was delivered [default: the ledger clock].")
@json_option
@click.pass_context
@handles_errors
def outbox_delivered(ctx: click.Context, message_id: str, at: str | None, as_json: bool) -> None:
    """Record that message ID was delivered (a NoticeDelivered event); the same delivery twice
    is a duplicate. A deletion notice's period counts from its delivery."""
    from ledger.app.outbox import delivered

    with opened(ctx) as ledger:
        outcome = delivered(ledger, message_id, _outbox_time(at))
    if as_json:
        emit_json(outcome.as_dict())
    else:
        click.echo(_outbox_line(outcome))


@outbox.command("failed")
@click.argument("message_id", metavar="ID")
@click.option("--reason", required=True, metavar="R", help="The mailer's reason (one line).")
@click.option("--at", metavar="T", help="When the attempt failed [default: the ledger clock].")
@json_option
@click.pass_context
@handles_errors
def outbox_failed(ctx: click.Context, message_id: str, reason: str, at: str | None,
                  as_json: bool) -> None:
    """Record one failed attempt to deliver message ID (a NoticeFailed event). After the
    policy's retries all failed, a deletion notice's period counts from the last attempt."""
    from ledger.app.outbox import failed

    with opened(ctx) as ledger:
        outcome = failed(ledger, message_id, reason, _outbox_time(at))
    if as_json:
        emit_json(outcome.as_dict())
    else:
        click.echo(_outbox_line(outcome))


# --- rights (SPEC §5 permissions, §2 register extract): permits, subject export ------------


@main.command()
@click.argument("args", nargs=-1, metavar="[SUBJECT] PURPOSE")
@click.option("--email", help="The person's e-mail address (instead of SUBJECT; needs --controller).")
@click.option("--account", help="The person's account id (instead of SUBJECT; needs --controller).")
@click.option("--controller", help="Controller [default: the one controller that knows SUBJECT].")
@click.option("--channel", help="Delivery channel: email, sms, app or post (marketing, newsletter).")
@click.option("--as-of", "as_of", metavar="T",
              help="Answer as known at T (knowledge time), from a replay of the log as of T.")
@json_option
@click.pass_context
@handles_errors
def permits(ctx: click.Context, args: tuple[str, ...], email: str | None, account: str | None,
            controller: str | None, channel: str | None, as_of: str | None, as_json: bool) -> None:
    """May PURPOSE be pursued for this person now? Prints yes/no and the deciding event.

    SUBJECT is a pseudonym, or give --email/--account with --controller instead. Exit 0 when
    permitted, 1 when not (so `ledger permits ... && send` fails safe), 2 on usage errors.
    """
    named = email is not None or account is not None
    if len(args) != (1 if named else 2):
        raise Failure("give SUBJECT PURPOSE, or PURPOSE with --email/--account and --controller", 2)
    subject, purpose = (None, args[0]) if named else (args[0], args[1])
    t = _clock(as_of)
    with opened(ctx) as ledger:
        who = SubjectSelector(subject_id=subject, email_address=email, account_id=account,
                              controller=controller)
        answer = ledger.permits(purpose, who, channel=channel, as_of=t)
    if as_json:
        emit_json(answer.as_dict())
    else:
        click.echo(f"{'yes' if answer.permitted else 'no'}: {answer.reason}")
    if not answer.permitted:
        ctx.exit(1)


@subject.command("export")
@click.option("--email", help="The person's e-mail address.")
@click.option("--account", help="The person's account id in an app.")
@click.option("--subject", "subject_id_", metavar="ID", help="The pseudonym.")
@click.option("--controller", required=True, help="The controller whose data is extracted.")
@click.option("--include-pseudonymised", is_flag=True,
              help="Decrypt a pseudonymised subject's sealed personal data (said so in the output).")
@click.option("--out", metavar="FILE", type=click.Path(dir_okay=False),
              help="Write to FILE (a new file, mode 0600, outside the data directory) "
                   "[default: stdout].")
@click.option("--force", is_flag=True, help="Replace FILE if it exists (never through a symlink).")
@json_option
@click.pass_context
@handles_errors
def subject_export(ctx: click.Context, email: str | None, account: str | None,
                   subject_id_: str | None, controller: str, include_pseudonymised: bool,
                   out: str | None, force: bool, as_json: bool) -> None:
    """Register extract / portable copy: everything held about the person, decrypted, as JSON.

    The output always is JSON (--json is accepted for symmetry). An erased subject's extract
    says so and holds nothing personal.
    """
    del as_json  # the extract is JSON either way
    settings: Settings = ctx.obj
    from ledger.app.export import check_out_path, write_export

    if out is not None:  # refuse before anything is decrypted
        check_target(check_out_path(out, settings.data_dir), force, "out")
    with opened(ctx) as ledger:
        who = SubjectSelector(subject_id=subject_id_, email_address=email, account_id=account,
                              controller=controller)
        extract = ledger.export_subject(who, include_pseudonymised=include_pseudonymised)
    if out is None:
        emit_json(extract)
        return
    path = write_export(extract, out, settings.data_dir, force=force)
    click.echo(f"wrote the extract of {extract['subject'][:16]}… to {path} (mode 0600)", err=True)


@subject.command("consent-record")
@click.option("--email", help="The person's e-mail address.")
@click.option("--subject", "subject_id_", metavar="ID", help="The pseudonym.")
@click.option("--controller", required=True, help="The controller whose consents they are.")
@click.option("--purpose", metavar="P", help="Only this purpose.")
@click.option("--sign", "sign", metavar="KEY", type=click.Path(dir_okay=False, path_type=Path),
              help="Sign it with this signer key (ledger audit keygen): a compact JWS.")
@json_option
@click.pass_context
@handles_errors
def subject_consent_record(ctx: click.Context, email: str | None, subject_id_: str | None,
                           controller: str, purpose: str | None, sign: Path | None,
                           as_json: bool) -> None:
    """The subject's consent history as an ISO/IEC TS 27560 consent record (the DPV profile
    dpv-27560:record), JSON; with --sign, a compact JWS (EdDSA) that `ledger audit
    check-receipt` verifies offline. Names the person by pseudonym only."""
    del as_json  # the record is JSON either way
    from ledger.app.consent_records import subject_consent_record as build

    with opened(ctx) as ledger:
        result = build(ledger, controller=controller, subject=subject_id_, email=email,
                       purpose=purpose, sign=sign)
    if isinstance(result, str):
        click.echo(result)
    else:
        emit_json(result)


# audit (issue 5) ---------------------------------------------------------------------------
def _short(digest: bytes) -> str:
    return digest.hex()[:16] + "…"


def _write_or_print(value: dict[str, Any], out: Path | None, what: str, force: bool = False) -> None:

    text = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        write_private_file(out, text, force=force)
        click.echo(f"{what} written to {out}", err=True)


def _auditor(settings: Settings, jobs: int = 1) -> Auditor:
    from ledger.app.auditing import Auditor

    return Auditor.open(settings, jobs)


jobs_option = click.option(
    "--jobs", type=click.IntRange(min=1, max=64), default=DEFAULT_WORKERS, show_default=True,
    help="Processes that hash the log in parallel (big logs only).")
digest_option = click.option(
    "--digest", "digest_file", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A digest from `ledger audit digest`.")
out_option = click.option(
    "--out", metavar="FILE", type=click.Path(dir_okay=False, path_type=Path),
    help="Write to FILE (a new file, mode 0600) instead of printing.")
force_option = click.option("--force", is_flag=True,
                            help="Replace the output file if it exists (never through a symlink).")
checkpoint_option = click.option(
    "--checkpoint", "checkpoint_file", metavar="FILE",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A signed checkpoint (C2SP tlog-checkpoint) from `ledger audit checkpoint`, instead of a digest.")
key_option = click.option(
    "--key", "keys", multiple=True, metavar="VERIFIER_KEY",
    help="The checkpoint's verifier key (name+keyid+base64), or a file holding it (repeatable).")


def _held(digest_file: Path | None, checkpoint_file: Path | None, keys: tuple[str, ...], *,
          need_key: bool, required: bool = False) -> Any:
    """The digest or the checkpoint (its signature verified when keys are given) a command
    checks the log against; None if neither was given."""
    from ledger.app.checkpoints import load_checkpoint, load_verifier
    from ledger.domain.proofs import load_digest

    if digest_file is not None and checkpoint_file is not None:
        raise Failure("--checkpoint: give a digest or a checkpoint, not both", 2)
    if keys and checkpoint_file is None:
        raise Failure("--key: verifies a --checkpoint; none was given", 2)
    if digest_file is not None:
        return load_digest(digest_file)
    if checkpoint_file is None:
        if required:
            raise Failure("--digest: give --digest FILE or --checkpoint FILE", 2)
        return None
    if need_key and not keys:
        raise Failure("--key: a checkpoint is trusted only with its verifier key: give --key "
                      "VERIFIER_KEY", 2)
    return load_checkpoint(checkpoint_file, [load_verifier(k) for k in keys])


def _signed_by(held: Any) -> str:
    return ", ".join(s.label for s in held.verified) or "no key checked"


@main.group()
def audit() -> None:
    """Verify the hash chain; Merkle digests, checkpoints and proofs an auditor checks
    without the log; re-check the sweep's decisions and erasures.

    verify, digest, checkpoint, prove, consistency and check-proof need no master key: an
    auditor can check a copy of the log alone. decisions, erasures and report open the whole
    ledger.
    """


@audit.command("verify")
@digest_option
@checkpoint_option
@key_option
@click.option("--no-decode", is_flag=True,
              help="Check the chain only (hashing-bound); do not decode every record.")
@jobs_option
@json_option
@click.pass_context
@handles_errors
def audit_verify(ctx: click.Context, digest_file: Path | None, checkpoint_file: Path | None,
                 keys: tuple[str, ...], no_decode: bool, jobs: int, as_json: bool) -> None:
    """Recompute the hash chain over the whole log and check every record decodes.

    With --digest, also prove the log still holds exactly the records the digest covers;
    with --checkpoint and --key, the records a signed checkpoint covers. Exit 1 naming the first bad position and what is wrong: altered, missing, reordered,
    forged, or truncated.
    """
    settings: Settings = ctx.obj
    if bootstrap.backend(settings).partitioned:
        # A topic is one chain per partition, not one chain: verify each (no global digest).
        if digest_file is not None:
            raise Failure("--digest: digests cover the embedded log; on Kafka each partition "
                          "is its own chain (see `ledger kafka heads`)", 2)
        if checkpoint_file is not None:
            from ledger.app.checkpoints import refuse_partitioned

            refuse_partitioned(settings, "checkpoint")
        chains = _verify_kafka_partitions(settings)
        if as_json:
            emit_json(chains.as_dict())
        else:
            click.echo(f"ok: {chains.records:,} records in {len(chains.chains)} partition chains"
                       if chains.ok else f"FAILED at {chains.reason}")
        if not chains.ok:
            ctx.exit(1)
        return
    held = _held(digest_file, checkpoint_file, keys, need_key=True)
    digest = getattr(held, "checkpoint", held)
    with _auditor(ctx.obj, jobs) as auditor:
        with progress_bar(auditor.source.size(), "Verifying") as progress:
            report = auditor.verify(digest, decode=not no_decode, progress=progress)
    f = report.finding
    if as_json:
        emit_json(report.as_dict())
    elif f is None:
        checked = "chain intact" + ("" if no_decode else ", every record decodes")
        click.echo(f"ok: {report.records:,} records, {checked}; head {_short(report.head_hash)}")
        if checkpoint_file is not None:
            click.echo(f"  holds exactly the {digest.size:,} records of the checkpoint of "
                       f"{digest.origin} signed by {_signed_by(held)} (Merkle root "
                       f"{_short(digest.merkle_root)})")
        elif digest is not None:
            click.echo(f"  holds exactly the {digest.size:,} records of the digest made "
                       f"{format_micros(digest.created_at)} (Merkle root {_short(digest.merkle_root)})")
    else:
        click.echo(f"FAILED at position {f.position}: {f.reason}")
    if f is not None:
        ctx.exit(1)


@audit.command("digest")
@out_option
@force_option
@jobs_option
@json_option
@click.pass_context
@handles_errors
def audit_digest(ctx: click.Context, out: Path | None, force: bool, jobs: int,
                 as_json: bool) -> None:
    """Write a digest of the log to keep outside the system: size, head hash, RFC 6962
    Merkle root and time (the ledger clock). Exit 1, writing nothing, if the chain is broken.
    """
    with _auditor(ctx.obj, jobs) as auditor:
        with progress_bar(auditor.source.size(), "Hashing") as progress:
            digest = auditor.digest(ledger_clock(ctx.obj.now).now(), progress=progress)
    _write_or_print(digest.as_dict(), out, f"digest of {digest.size:,} records", force)
    if as_json and out is not None:
        emit_json(digest.as_dict())


@audit.command("prove")
@click.argument("event_id")
@click.option("--digest", "digest_file", metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The digest whose Merkle root the proof leads to (or --checkpoint).")
@checkpoint_option
@key_option
@out_option
@force_option
@json_option
@click.pass_context
@handles_errors
def audit_prove(ctx: click.Context, event_id: str, digest_file: Path | None,
                checkpoint_file: Path | None, keys: tuple[str, ...], out: Path | None,
                force: bool, as_json: bool) -> None:
    """Print a JSON proof that EVENT_ID is in the log the digest covers: the event's record
    and its RFC 6962 audit path to the digest's Merkle root. `ledger audit check-proof`
    verifies it without the log. With --out and --json, the summary of what was written.
    """
    held = _held(digest_file, checkpoint_file, keys, need_key=False, required=True)
    with _auditor(ctx.obj) as auditor:
        proof = auditor.prove(event_id, getattr(held, "checkpoint", held))
    made = proof.as_dict()
    _write_or_print(made, out, f"inclusion proof of position {proof.position}", force)
    if as_json and out is not None:
        emit_json({"written": str(out), **{k: made[k] for k in (
            "format", "event_id", "position", "leaf_index", "tree_size", "merkle_root")}})


@audit.command("consistency")
@click.option("--digest", "digest_file", metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An earlier digest the log must extend (or --checkpoint).")
@checkpoint_option
@key_option
@out_option
@force_option
@json_option
@click.pass_context
@handles_errors
def audit_consistency(ctx: click.Context, digest_file: Path | None, checkpoint_file: Path | None,
                      keys: tuple[str, ...], out: Path | None, force: bool, as_json: bool) -> None:
    """Print a JSON RFC 6962 proof that today's log extends an earlier digest (its records
    unchanged, only appended to). `ledger audit check-proof` verifies it without the log.
    With --out and --json, the summary of what was written.
    """
    held = _held(digest_file, checkpoint_file, keys, need_key=False, required=True)
    with _auditor(ctx.obj) as auditor:
        proof = auditor.consistency(getattr(held, "checkpoint", held),
                                    ledger_clock(ctx.obj.now).now())
    made = proof.as_dict()
    _write_or_print(made, out, f"consistency proof {proof.old_size:,} -> {proof.new_size:,}", force)
    if as_json and out is not None:
        emit_json({"written": str(out), **{k: made[k] for k in (
            "format", "old_size", "old_root", "new_size", "new_root", "new_head_hash")}})


@audit.command("check-proof")
@click.argument("proof_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--digest", "digest_files", multiple=True, metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A digest the proof must be about (repeatable).")
@click.option("--checkpoint", "checkpoint_files", multiple=True, metavar="FILE",
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A signed checkpoint the proof must be about (repeatable; needs --key).")
@key_option
@json_option
@handles_errors
def audit_check_proof(proof_file: Path, digest_files: tuple[Path, ...],
                      checkpoint_files: tuple[Path, ...], keys: tuple[str, ...],
                      as_json: bool) -> None:
    """Verify a proof from `ledger audit prove` or `ledger audit consistency` without the log
    or a data directory. With --digest the proof must lead to that digest's Merkle root;
    without one it is checked only against the root it carries. With --checkpoint and --key,
    the same against a signed checkpoint, its signature checked first. Exit 1 if it fails.
    """
    from ledger.domain.proofs import check_proof, load_digest, load_proof

    if keys and not checkpoint_files:
        raise Failure("--key: verifies a --checkpoint; none was given", 2)
    proof = load_proof(proof_file)
    held = [load_digest(d) for d in digest_files]
    held += [_held(None, c, keys, need_key=True) for c in checkpoint_files]
    result = check_proof(proof, held)
    if as_json:
        emit_json(result.as_dict())
    else:
        click.echo(f"{'ok' if result.ok else 'FAILED'}: {result.detail}")
        if result.ok and not result.pinned:
            click.echo("  (pass --digest FILE, or --checkpoint FILE --key KEY, to tie it to a "
                       "tree head you hold)")
    if not result.ok:
        sys.exit(1)


@audit.command("keygen")
@click.option("--out", "out_dir", required=True, metavar="DIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="Directory for checkpoint.key (the signer key, mode 0600) and checkpoint.vkey (created 0700 if missing).")
@click.option("--name", metavar="NAME",
              help="The key's name, also the origin of the checkpoints it signs, e.g. consents.example.se/log [default: consent-ledger/<random>].")
@force_option
@json_option
@handles_errors
def audit_keygen(out_dir: Path, name: str | None, force: bool, as_json: bool) -> None:
    """Make an Ed25519 key pair for signing checkpoints and print the verifier key (give it
    to auditors and witnesses; keep checkpoint.key secret). Refuses to replace keys without
    --force.
    """
    from ledger.app.checkpoints import keygen

    pair = keygen(out_dir, name, force=force)
    if as_json:
        emit_json(pair.as_dict())
    else:
        click.echo(pair.verifier.encode())
        click.echo(f"signer key written to {pair.signer_file} (mode 0600: keep it secret), "
                   f"verifier key to {pair.verifier_file}", err=True)


@audit.command("checkpoint")
@click.option("--sign", "sign", metavar="KEY", type=click.Path(dir_okay=False, path_type=Path),
              help="The signer key file from `ledger audit keygen` [default: print the checkpoint unsigned].")
@click.option("--origin", metavar="NAME",
              help="The log's name, the checkpoint's first line [default: the signer key's name].")
@out_option
@force_option
@jobs_option
@json_option
@click.pass_context
@handles_errors
def audit_checkpoint(ctx: click.Context, sign: Path | None, origin: str | None,
                     out: Path | None, force: bool, jobs: int, as_json: bool) -> None:
    """Write the log's size and RFC 6962 Merkle root as a C2SP tlog-checkpoint, signed with
    --sign as a C2SP signed note, which standard transparency-log verifiers and witnesses
    check. Exit 1, writing nothing, if the chain is broken.
    """
    from ledger.app.checkpoints import make_checkpoint, write_checkpoint

    with progress_bar(None, "Hashing") as progress:
        written = make_checkpoint(ctx.obj, sign=sign, origin=origin, jobs=jobs, progress=progress)
    if out is not None:
        write_checkpoint(written, out, force=force)
        signed = "unsigned" if written.signer is None else f"signed by {written.signer.label}"
        click.echo(f"checkpoint of {written.checkpoint.size:,} records ({signed}) written to {out}",
                   err=True)
    if as_json:
        emit_json(written.as_dict())
    elif out is None:
        click.echo(written.note.decode("utf-8"), nl=False)


@audit.command("decisions")
@click.option("--as-of", "as_of", metavar="T",
              help="Only sweep events recorded by T (knowledge time) [default: all].")
@click.option("--policy", "policy_paths", multiple=True, metavar="PATH",
              help="A policy TOML an event may have recorded the hash of (repeatable; the "
                   "shipped and configured policies are always known).")
@json_option
@click.pass_context
@handles_errors
def audit_decisions(ctx: click.Context, as_of: str | None, policy_paths: tuple[str, ...],
                    as_json: bool) -> None:
    """Re-verify every retention sweep event (notice, pseudonymisation, erasure): recompute
    its decision from the log as known just before that sweep ran, under the policy whose
    hash it recorded. Exit 1 if any is unjustified."""
    from ledger.app.audit_decisions import audit as audit_sweeps

    with opened(ctx) as ledger, work_progress("Re-deciding sweeps") as progress:
        result = audit_sweeps(ledger, _clock(as_of), policy_paths, progress=progress)
    if as_json:
        emit_json(result.as_dict())
    else:
        for v in result.verdicts:
            e = v.event
            click.echo(f"{'ok ' if v.justified else 'BAD'} {e.position:>8} {e.type:<20} "
                       f"{e.controller} {e.subject[:16]}… {v.reason}")
        s = result.summary()
        click.echo(f"{s['events']} sweep events in {s['sweep_runs']} runs: {s['justified']} "
                   f"justified, {s['unjustified']} unjustified")
    if not result.ok:
        ctx.exit(1)


@audit.command("erasures")
@json_option
@click.pass_context
@handles_errors
def audit_erasures(ctx: click.Context, as_json: bool) -> None:
    """Check the erasure invariant: every SubjectErased has its named keys destroyed (and
    every SubjectPseudonymised its keys sealed), every destroyed key has a SubjectErased.
    Opening the ledger first completes erasures a crash interrupted. Exit 1 on a finding."""
    from ledger.app.erasure_audit import audit_erasures as check

    with opened(ctx) as ledger:
        result = check(ledger)
    if as_json:
        emit_json(result.as_dict())
    else:
        for f in result.findings:
            click.echo(f.line())
        s = result.summary()
        click.echo(", ".join(counted(s[k], word) for k, word in (
            ("erasures", "erasure"), ("pseudonymisations", "pseudonymisation"),
            ("keys_destroyed", "destroyed key"))) + f": {counted(s['findings'], 'finding')}")
    if not result.ok:
        ctx.exit(1)


@audit.command("report")
@click.argument("subject", required=False)
@click.option("--email", help="The person's e-mail address (with --controller); only its pseudonym is used.")
@controller_option
@click.option("--as-of", "as_of", metavar="T", help="As known at T (knowledge time) [default: now].")
@click.option("--policy", "policy_paths", multiple=True, metavar="PATH",
              help="A policy TOML a sweep event may have recorded the hash of (repeatable).")
@click.option("--html", "html_file", required=True, metavar="FILE",
              type=click.Path(dir_okay=False, path_type=Path),
              help="Write the page here (a new file, mode 0600).")
@force_option
@json_option
@click.pass_context
@handles_errors
def audit_report(ctx: click.Context, subject: str | None, email: str | None, controller: str | None,
                 as_of: str | None, policy_paths: tuple[str, ...], html_file: Path,
                 force: bool, as_json: bool) -> None:
    """A self-contained HTML page about one subject for an auditor: timeline chart, consents
    with evidence, the retention decision and its rule chain, each sweep event with its
    justification, and the chain status. No personal data: nothing is decrypted."""
    from ledger.app.audit_report import build, check_chain, registry_lookup, write
    from ledger.app.permits import resolve_subject_in

    check_target(html_file, force, "html")  # refuse before any work
    with opened(ctx) as ledger:
        ref = resolve_subject_in(ledger, subject=subject, email=email, controller=controller)
        ctrl, pid = ref.controller, ref.subject
        report = build(ledger, ctrl, pid, _clock(as_of), policy_paths)
        notices = registry_lookup(ledger, ctrl)
    with _auditor(ctx.obj) as auditor:
        report = check_chain(report, auditor)
    write(report, html_file, force=force, notices=notices)
    if as_json:
        emit_json(report.summary() | {"html": str(html_file)})
        return
    s = report.sweeps.summary()
    chain_ok = report.chain is not None and report.chain.ok
    click.echo(f"report on {ctrl} subject {pid[:16]}… written to {html_file} "
               f"({len(report.explained['timeline'])} events, {s['justified']}/{s['events']} sweep "
               f"events justified, chain {'intact' if chain_ok else 'BROKEN'})")
    cited = report.checkpoint
    if cited is None:
        click.echo("  no signed checkpoint covers it")
    else:
        c = cited.checkpoint
        agrees = {True: "the log matches it", False: "the log does NOT match it",
                  None: "not compared"}[report.checkpoint_matches]
        click.echo(f"  cites the checkpoint of {c.size:,} records of {c.checkpoint.origin} signed "
                   f"by {', '.join(s.label for s in c.verified)} ({cited.path}): {agrees}")


# --- Kafka (issue 6) ---------------------------------------------------------------------


def _kafka_log(settings: Settings) -> Any:
    """The Kafka log named by --log; these commands need no data directory."""
    return bootstrap.open_kafka_log(settings)


@audit.command("consents")
@as_of_option
@json_option
@click.pass_context
@handles_errors
def audit_consents(ctx: click.Context, as_of: str | None, as_json: bool) -> None:
    """Check every consent's evidence against the notice registry: the notice version is
    published (in the consent's language), the hash matches its text, it was published no
    later than the consent was given, and ui_action and language are recorded. Exit 1 on an
    unverifiable consent, with the reasons for each."""
    from ledger.app.consent_audit import audit_consents as check

    with opened(ctx) as ledger:
        result = check(ledger, as_of=_clock(as_of))
    if as_json:
        emit_json(result.as_dict())
    else:
        for f in result.findings:
            click.echo(f.line())
        s = result.summary()
        click.echo(f"{counted(s['consents'], 'consent')}: {s['verified']:,} verified, "
                   f"{s['unverifiable']:,} unverifiable")
    if not result.ok:
        ctx.exit(1)


@audit.command("check-receipt")
@click.argument("file", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", "key", required=True, metavar="VERIFIER_KEY",
              help="The verifier key (name+keyid+base64, or a file holding it).")
@json_option
@click.pass_context
def audit_check_receipt(ctx: click.Context, file: Path, key: str, as_json: bool) -> None:
    """Verify a signed consent receipt offline (no data directory): exit 0 and a summary if
    KEY signed it, exit 1 with the reason if not."""
    from ledger.app.consent_records import check_receipt

    try:
        record = check_receipt(file, key)
    except LedgerError as e:
        raise Failure(cli_message(e), e.exit_code) from None
    summary = {"ok": True, "record": record.get("dct:identifier"),
               "controller": (record.get("dpv:hasDataController") or {}).get("dct:identifier"),
               "subject": (record.get("dpv:hasDataSubject") or {}).get("dct:identifier"),
               "purposes": len(record.get("records") or [])}
    if as_json:
        emit_json({**summary, "consent_record": record})
    else:
        click.echo(f"ok: consent record {summary['record']} of {summary['controller']} "
                   f"{str(summary['subject'])[:16]}…, {summary['purposes']} purposes")


# --- the notice registry (SPEC §7b) --------------------------------------------------------


@main.group()
def notice() -> None:
    """The notice registry: the exact texts (privacy notices) consents refer to."""


@notice.command("publish")
@click.option("--controller", required=True, metavar="C", help="The controller whose notice it is.")
@click.option("--id", "notice_id", required=True, metavar="ID", help="The notice id consents name.")
@click.option("--version", "version", required=True, metavar="V", help="Its version.")
@click.option("--language", required=True, metavar="LANG", help="BCP 47 language tag, e.g. sv.")
@click.option("--title", metavar="T", help="A short title.")
@click.argument("file", metavar="FILE", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_context
@handles_errors
def notice_publish(ctx: click.Context, controller: str, notice_id: str, version: str,
                   language: str, title: str | None, file: Path, as_json: bool) -> None:
    """Publish the text in FILE (UTF-8) as a notice version; the ledger computes its SHA-256.
    Publishing the same text again is a no-op; another text under a published version is
    refused (exit 1): publish a new version."""
    from ledger.app.notices import publish_notice
    from ledger.domain.notices import MAX_NOTICE_BYTES

    with file.open("rb") as f:
        data = f.read(MAX_NOTICE_BYTES + 1)  # enough to tell it is too long
    with opened(ctx) as ledger:
        outcome = publish_notice(ledger, ledger.notices, controller=controller,
                                 notice_id=notice_id, version=version, language=language,
                                 data=data, title=title)
    n = outcome.notice
    if as_json:
        emit_json({"status": outcome.status, **n.as_dict()})
    else:
        click.echo(f"{outcome.status}: {controller} {n.key.label()} sha256 {n.sha256}")


@notice.command("list")
@controller_option
@json_option
@click.pass_context
@handles_errors
def notice_list(ctx: click.Context, controller: str | None, as_json: bool) -> None:
    """Every published notice version: controller, id, version, language, hash, when."""
    from ledger.app.notices import list_notices

    with opened(ctx) as ledger:
        rows = list_notices(ledger, controller)
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        click.echo(f"{r['controller']}  {r['notice_id']}  v{r['version']}  {r['language']}  "
                   f"{r['published_at']}  {r['sha256']}  {r['title'] or ''}".rstrip())
    click.echo(counted(len(rows), "notice version"))


@notice.command("show")
@click.argument("notice_id", metavar="ID")
@click.option("--version", "version", metavar="V", help="Only this version.")
@click.option("--language", metavar="LANG", help="Only this language.")
@controller_option
@json_option
@click.pass_context
@handles_errors
def notice_show(ctx: click.Context, notice_id: str, version: str | None, language: str | None,
                controller: str | None, as_json: bool) -> None:
    """A notice's versions with their texts (exit 2 if it is not published)."""
    from ledger.app.notices import show_notice

    with opened(ctx) as ledger:
        rows = show_notice(ledger, notice_id, controller=controller, version=version,
                           language=language)
    if as_json:
        emit_json(rows)
        return
    for i, r in enumerate(rows):
        if i:
            click.echo("")
        click.echo(f"# {r['controller']} {r['notice_id']} version {r['version']} "
                   f"({r['language']}): {r['title'] or ''}".rstrip())
        click.echo(f"# published {r['published_at']}, sha256 {r['sha256']}")
        click.echo(r["text"].rstrip("\n"))


@main.group()
def kafka() -> None:
    """The Kafka log: topics, chain heads, dead letters (give --log kafka://host:port/topic)."""


@kafka.command("init")
@click.option("--partitions", type=click.IntRange(min=1, max=10_000), metavar="N",
              help="Partitions of the event topic [default: the URL's ?partitions=, else 6].")
@click.option("--replication-factor", type=click.IntRange(min=1, max=16), default=1,
              show_default=True, help="Replicas per partition (3 in production).")
@json_option
@click.pass_obj
@handles_errors
def kafka_init(settings: Settings, partitions: int | None, replication_factor: int,
               as_json: bool) -> None:
    """Create the event topic and the dead-letter topic if they are missing.

    An existing event topic is never repartitioned: a subject's events must stay in the
    partition its key hashes to. Exit 2 if it exists with another --partitions count.
    """
    log = _kafka_log(settings)
    try:
        report = log.create_topics(partitions, replication_factor)
    finally:
        log.close()
    topic, rejected = log.settings.topic, log.settings.rejected_topic
    have = report.partitions.get(topic)
    if as_json:
        emit_json({"topic": topic, "partitions": have, "rejected_topic": rejected,
                   "created": report.created})
    else:
        for name in (topic, rejected):
            state = "Created" if name in report.created else "Already present:"
            n = report.partitions.get(name)
            click.echo(f"{state} {name} ({n} partition{'' if n == 1 else 's'})")
    report.check_not_repartitioned(topic, partitions)


@kafka.command("heads")
@json_option
@click.pass_obj
@handles_errors
def kafka_heads(settings: Settings, as_json: bool) -> None:
    """The head of each partition's hash chain: position, offset, recorded_at, hash."""
    log = _kafka_log(settings)
    try:
        rows = log.head_rows()
    finally:
        log.close()
    if as_json:
        emit_json(rows)
    else:
        for r in rows:
            click.echo(f"{r['partition']}\toffset {r['offset']}\t{r['recorded_at']}\t{r['hash']}")
        if not rows:
            click.echo("(no ledger records)")


def _verify_kafka_partitions(settings: Settings) -> PartitionsReport:
    from ledger.app.auditing import verify_partitions

    log = _kafka_log(settings)
    try:
        return verify_partitions(log)
    finally:
        log.close()


@kafka.command("verify")
@json_option
@click.pass_obj
@handles_errors
def kafka_verify(settings: Settings, as_json: bool) -> None:
    """Verify the hash chain of every partition; exit 1 if one breaks.

    Each partition is its own chain (offsets may have gaps where messages that are not
    ledger records were skipped); every record is also decoded and checked against its
    stored event id, type and recorded_at.
    """
    report = _verify_kafka_partitions(settings)
    rows = report.rows()
    if as_json:
        emit_json(rows)
    else:
        for r in rows:
            state = "ok" if r["ok"] else f"FAILED at offset {r['first_bad_offset']}: {r['reason']}"
            click.echo(f"partition {r['partition']}: {r['records']} records, {state}")
    if not report.ok:
        sys.exit(1)


@kafka.command("fingerprint")
@click.argument("files", nargs=-1, required=True)
@json_option
@handles_errors
def kafka_fingerprint(files: tuple[str, ...], as_json: bool) -> None:
    """A content hash of projection FILES taken together (paths or globs).

    Log positions are left out, so the shards of Kafka workers, a whole Kafka projection
    and an embedded projection of the same events all hash alike.
    """
    from projections.engine.workers import content_fingerprint, expand

    paths = expand(files)
    fp = content_fingerprint(paths)
    if as_json:
        emit_json({"files": [str(p) for p in paths], "fingerprint": fp})
    else:
        click.echo(fp)


@kafka.command("rejected")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
@click.pass_obj
@handles_errors
def kafka_rejected(settings: Settings, limit: int, as_json: bool) -> None:
    """List the dead-letter topic: which message (topic/partition/offset) and why."""
    log = _kafka_log(settings)
    try:
        entries = list(log.rejected(limit))
    finally:
        log.close()
    if as_json:
        emit_json(entries)
    else:
        for e in entries:
            click.echo(f"{e['source']}\t{e['reason']}")


# --- the service (ledger serve) and its tokens ---------------------------------------------
@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8787, show_default=True,
              help="The TCP port (0: any free port).")
@click.option("--sweep-every", "sweep_every", metavar="DURATION", default=None,
              help="Run the sweep on this schedule, an ISO-8601 duration such as P1D.")
@click.pass_context
@handles_errors
def serve(ctx: click.Context, host: str, port: int, sweep_every: str | None) -> None:
    """Serve the HTTP API (docs/service.md) until stopped: one process owns the data
    directory, groups concurrent publishes into one durable append, follows the log with the
    projector and answers permits with read-your-writes."""
    from ledger.domain.retention.policy import Duration
    from ledger.http.server import serve as run_server

    period = None
    if sweep_every is not None:
        try:
            period = Duration.parse(sweep_every)
        except ValueError as e:
            raise Failure(f"--sweep-every: {e}", 2) from None
    run_server(ctx.obj, host=host, port=port, sweep_every=period)


@main.group()
def token() -> None:
    """API tokens for `ledger serve` (only a hash is stored, in DATA/tokens.json)."""


@token.command("create")
@click.argument("name")
@click.option("--scope", "scopes", required=True,
              help="Comma-separated: publish, permits, export, decisions, sweep, metrics, notify.")
@click.pass_context
@handles_errors
def token_create(ctx: click.Context, name: str, scopes: str) -> None:
    """Create a token; it is printed once and cannot be shown again."""
    from ledger.app.tokens import TokenStore, parse_scopes

    settings: Settings = ctx.obj
    if not (settings.data_dir / "ledger.toml").exists():
        raise Failure(f"no ledger in {settings.data_dir} (run `ledger init`)", 2)
    click.echo(TokenStore(settings.data_dir).create(name, parse_scopes(scopes)))


@token.command("list")
@json_option
@click.pass_context
@handles_errors
def token_list(ctx: click.Context, as_json: bool) -> None:
    """The tokens' names, scopes and creation times (never the tokens)."""
    from ledger.app.tokens import TokenStore

    found = TokenStore(ctx.obj.data_dir).list()
    if as_json:
        emit_json([t.as_dict() for t in found])
        return
    if not found:
        click.echo("no tokens")
    for t in found:
        click.echo(f"{t.name}\t{','.join(t.scopes)}\t{t.created_at}")


@token.command("revoke")
@click.argument("name")
@click.pass_context
@handles_errors
def token_revoke(ctx: click.Context, name: str) -> None:
    """Revoke a token: the server refuses it from the next request on."""
    from ledger.app.tokens import TokenStore

    if not TokenStore(ctx.obj.data_dir).revoke(name):
        raise Failure(f"no token named {name[:64]!r}", 2)
    click.echo(f"revoked {name}")


if __name__ == "__main__":
    main()
