"""``convo chat``: an interactive chat that streams replies, with slash commands.

On a terminal it prompts and keeps going after an error (printed on one line). With piped
input every line is one message or command, each reply goes to stdout followed by a newline,
and the first error ends the run with a non-zero status, so a script can tell. Replies are the
only thing on stdout: what commands print, and notices (turns dropped or summarized to fit the
budget), go to stderr.

A message of several lines: end a line with a backslash to go on on the next one, or put the
message between two lines that hold only three double quotes, as in a Python string.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any

import click

from .._exceptions import ConvoError
from ..models import DEFAULT_MODEL
from ._backend import backend_options, choose, note, one_line, open_client, usd

HELP = """\
/save FILE   save the conversation (JSON)     /load FILE   load a saved conversation
/tokens      token use against the budget     /stats       requests, tokens and cost so far
/undo        drop the last exchange           /reset       forget the history
/help        this list                        /quit        leave (or Ctrl-D)
Several lines: end a line with \\ to go on, or put the message between two lines of three
double quotes."""
#: A line holding only this opens or closes a message of several lines.
BLOCK = '"""'



class Chat:
    """The chat loop's state: the conversation, the client and where output goes."""

    def __init__(self, conv: Any, client: Any, *, interactive: bool, write: Callable[[str], Any],
                 tell: Callable[[str], Any] | None = None) -> None:
        self.conv = conv
        self.client = client
        self.interactive = interactive
        self.write = write  # replies (stdout)
        self.tell = tell or (lambda text: click.echo(text, err=True))  # what commands print (stderr)
        self.continuing = False  # inside a message of several lines (the prompt shows it)
        self.commands: dict[str, Callable[[str], bool | None]] = {
            "/save": self.save,
            "/load": self.load,
            "/tokens": self.tokens,
            "/undo": self.undo,
            "/reset": self.reset,
            "/stats": self.stats,
            "/help": self.help,
            "/quit": self.quit,
            "/exit": self.quit,
        }

    # -- the loop ---------------------------------------------------------------------------

    def run(self, lines: Iterable[str]) -> int:
        """Handle each message (one line, or several joined, see the module doc); returns the exit status."""
        for text in self.messages(lines):
            if not text.strip():
                continue
            try:
                if not self.handle(text):
                    return 0
            except (ConvoError, OSError, click.UsageError) as exc:
                if not self.interactive:
                    raise
                note(f"error: {one_line(exc.format_message() if isinstance(exc, click.UsageError) else str(exc))}")
        return 0

    def messages(self, lines: Iterable[str]) -> Iterable[str]:
        """Lines joined into messages: a trailing backslash continues a line; \"\"\" opens and closes a block."""
        pending: list[str] | None = None
        block = False
        for line in lines:
            text = line.rstrip("\r\n")
            if text.strip() == BLOCK:
                block = not block
                if block:
                    pending = pending or []
                    self.continuing = True
                    continue
            elif block:
                assert pending is not None
                pending.append(text)
                continue
            elif text.endswith("\\"):
                pending = [*(pending or []), text[:-1]]
                self.continuing = True
                continue
            else:
                pending = [*(pending or []), text]
            message, pending = "\n".join(pending or []), None
            self.continuing = False
            yield message
        if pending:  # the input ended inside a block or after a backslash: send what there is
            self.continuing = False
            yield "\n".join(pending)

    def handle(self, text: str) -> bool:
        """One line: a command or a message. False when the chat should end."""
        if text.startswith("/"):
            name, _, arg = text.strip().partition(" ")
            command = self.commands.get(name.lower())
            if command is None:
                raise click.UsageError(f"unknown command {name}; /help lists the commands")
            return command(arg.strip()) is not False
        self.reply(text)
        return True

    def reply(self, text: str) -> None:
        """Send a message and stream the answer; Ctrl-C stops it and takes the message back."""
        before, failed = self.conv.summary, self.conv.summary_error
        sel = self.conv.last_selection
        dropped = sel.start if sel is not None else 0
        stream = self.conv.stream(text)
        wrote = False
        try:
            for piece in stream:
                self.write(piece)
                wrote = True
        except KeyboardInterrupt:
            stream.close()  # the conversation takes the unanswered message back
            self.write("\n")
            note("interrupted; the message was not added")
            return
        except BaseException:
            if wrote:  # end the partial reply's line before the error
                self.write("\n")
            raise
        self.write("\n\n" if self.interactive else "\n")
        summary = self.conv.summary
        if summary is not None and summary is not before:
            note(f"summarized the first {summary.turns} turn(s) to stay within the budget")
        elif self.conv.summary_error and self.conv.summary_error != failed:
            note(f"summarizing failed ({self.conv.summary_error}); dropped the oldest turns instead")
        elif (sel := self.conv.last_selection) is not None and sel.start > dropped and summary is None:
            note(
                f"the oldest {sel.start - dropped} turn(s) no longer fit the {self.conv.budget:,}-token budget and were "
                f"dropped: the model no longer sees the first {sel.start} (/tokens shows the budget; "
                "--strategy summarize keeps a summary of them instead)"
            )

    def say(self, text: str) -> None:
        self.tell(text)

    # -- commands ---------------------------------------------------------------------------

    def save(self, arg: str) -> None:
        path = _need_path(arg, "/save")
        self.conv.save(path)
        self.say(f"saved {len(self.conv)} messages to {path}")

    def load(self, arg: str) -> None:
        from ..conversation import Conversation

        path = _need_path(arg, "/load")
        conv = Conversation.load(path)
        conv.client = self.client
        self.conv = conv
        self.say(f"loaded {len(conv)} messages from {path} ({conv.model}, budget {conv.budget:,} tokens)")

    def tokens(self, arg: str) -> None:
        conv = self.conv
        used, budget = conv.tokens + conv.max_tokens, conv.budget
        self.say(
            f"next request: {conv.tokens:,} input tokens (estimate) + {conv.max_tokens:,} for the reply "
            f"= {used:,} of the {budget:,}-token budget ({used / budget:.0%})"
        )
        line = f"history: {len(conv)} messages, {conv.total_tokens:,} tokens if sent whole"
        if conv.summary is not None:
            line += f"; the first {conv.summary.turns} turns are summarized"
        self.say(line)
        s = self.client.stats
        receipt = getattr(conv, "last_receipt", None)
        self.say(
            f"used so far: {s.input_tokens:,} input + {s.output_tokens:,} output tokens in "
            f"{s.requests} request(s), {usd(s.cost_usd)}" + (f"; last request: {receipt}" if receipt else "")
        )

    def undo(self, arg: str) -> None:
        removed = self.conv.undo()
        self.say(f"removed the last exchange ({len(removed)} messages); {len(self.conv)} left")

    def reset(self, arg: str) -> None:
        self.conv.reset()
        self.say("the history is empty (the system prompt stays)")

    def stats(self, arg: str) -> None:
        self.say(str(self.client.stats))

    def help(self, arg: str) -> None:
        self.say(HELP)

    def quit(self, arg: str) -> bool:
        return False


def _need_path(arg: str, command: str) -> str:
    if not arg:
        raise click.UsageError(f"{command} needs a file name, e.g. {command} chat.json")
    return arg


def _prompt_lines(session: Chat) -> Iterable[str]:
    """Lines typed at the prompt (with line editing); Ctrl-C clears the line, Ctrl-D ends."""
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:  # pragma: no cover - not on every platform
        pass
    while True:
        try:
            yield input("...> " if session.continuing else "you> ")
        except KeyboardInterrupt:
            print()
        except EOFError:
            print()
            return


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@click.command()
@click.option("--system", "-s", default=None, help="The system prompt.")
@click.option("--budget", "-b", type=click.IntRange(min=1), default=None,
              help="Context budget in tokens: input + reply (default 16,000).")
@click.option("--strategy", type=click.Choice(["window", "summarize"]), default=None,
              help="When the history outgrows the budget: drop the oldest turns (window, the "
                   "default) or fold them into a running summary (summarize).")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Longest reply, in tokens (default 1,024).")
@click.option("--load", "load_path", type=click.Path(dir_okay=False), default=None,
              help="Start from a conversation saved with /save.")
@backend_options
def chat(system: str | None, budget: int | None, strategy: str | None, max_tokens: int | None,
         load_path: str | None, model: str | None, base_url: str | None, force_sim: bool,
         timeout: float | None) -> int:
    """Chat with streamed replies. Piped input: one message or /command per line.

    Commands: /save FILE, /load FILE, /tokens, /undo, /reset, /stats, /help, /quit; their output
    goes to stderr, replies to stdout. Several lines: end a line with \\ to go on, or write the
    message between two lines of three double quotes.
    """
    interactive = sys.stdin.isatty()
    conv = _conversation(system, budget, strategy, max_tokens, load_path, model)
    # On a terminal the simulator streams at a readable pace; piped runs get replies at once.
    sim_options = {"token_latency": 0.01} if interactive else {}
    with open_client(choose(base_url, force_sim), conv.model, timeout=timeout, sim_options=sim_options) as (client, _):
        conv.client = client
        session = Chat(conv, client, interactive=interactive, write=_write)
        if interactive:
            note(f"chatting with {conv.model}, budget {conv.budget:,} tokens; /help for commands, Ctrl-D to leave")
            return session.run(_prompt_lines(session))
        return session.run(sys.stdin)


def _conversation(system: str | None, budget: int | None, strategy: str | None, max_tokens: int | None,
                  load_path: str | None, model: str | None) -> Any:
    """A new conversation, or the loaded one with the options given on the command line."""
    from ..conversation import Conversation
    from ..strategies import SlidingWindow
    from ..summarize import Summarize

    chosen = {"window": SlidingWindow, "summarize": Summarize}[strategy]() if strategy else None
    if load_path is None:
        return Conversation(system, model=model or DEFAULT_MODEL, budget=budget or 16_000,
                            strategy=chosen, max_tokens=max_tokens)
    data = Conversation.load(load_path).to_dict()
    for key, value in (("system", system), ("model", model), ("budget", budget), ("max_tokens", max_tokens)):
        if value is not None:
            data[key] = value
    return Conversation.from_dict(data, strategy=chosen)
