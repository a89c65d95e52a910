"""manage.py jobs_scheduler: run the cron scheduler (periodiq) for the timetable in schedules.py."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_dramatiq.management.commands.rundramatiq import Command as RunDramatiq

#: Seconds before a scheduler that exited on an error is started again.
RESTART_DELAY_S = 5
#: Longest the restart delay goes without noticing a SIGTERM or SIGINT (seconds).
STOP_CHECK_INTERVAL_S = 0.1


class Command(BaseCommand):
    help = (
        "Run the scheduler: sends each periodic job of apps/jobs/schedules.py when its cron "
        "expression is due, and restarts it if it exits on an error. Runs until stopped; run one "
        "per deployment."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--verbose", action="store_true", help="Log every scheduling decision.")

    def handle(self, *args: Any, **options: Any) -> None:
        executable = Path(sys.executable).with_name("periodiq")
        program = str(executable) if executable.exists() else shutil.which("periodiq")
        if program is None:
            raise CommandError("The periodiq program is not installed next to this Python.")
        modules = RunDramatiq().discover_tasks_modules()
        argv = [program, *(["-v"] if options["verbose"] else []), *modules, "--path", str(settings.BASE_DIR)]
        self.stdout.write(f"Starting the scheduler: {' '.join(argv)}")
        self._stopping = False
        self._child: subprocess.Popen | None = None
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._forward)
        while not self._stopping:
            child = self._child = subprocess.Popen(argv)
            if self._stopping:  # the signal came while it was starting, before it could be forwarded
                child.terminate()
            code = child.wait()
            if self._stopping or code == 0:
                return
            self.stderr.write(f"The scheduler exited with {code}; restarting in {RESTART_DELAY_S} s.")
            self._wait_unless_stopped(RESTART_DELAY_S)

    def _wait_unless_stopped(self, seconds: float) -> None:
        """Sleep `seconds`, returning early once a signal asked the command to stop.

        Short sleeps that check `_stopping`, not threading.Event.wait: the signal handler runs in
        this same thread, and Event.set() there can deadlock on the lock Event.wait() holds.
        """
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, STOP_CHECK_INTERVAL_S))

    def _forward(self, signum: int, frame: object) -> None:
        self._stopping = True
        if self._child is not None and self._child.poll() is None:
            self._child.send_signal(signum)
