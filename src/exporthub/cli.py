"""The ``exporthub`` command: serve, run a worker, manage users."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from exporthub import __version__
from exporthub.client_cli import add_client_commands
from exporthub.config import Settings
from exporthub.exitcodes import EXIT_FAILED, EXIT_OK, EXIT_USAGE

MAX_PLAN_DAYS = 36_500


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(
        level=os.environ.get("EXPORTHUB_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args) or EXIT_OK)
    except KeyboardInterrupt:
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exporthub", description="Comment exports with live channels."
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(title="commands")

    serve = commands.add_parser("serve", help="serve the API, WebSocket and a worker")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--no-worker", action="store_true", help="run jobs in separate workers only"
    )
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="run jobs from the shared queue")
    worker.set_defaults(handler=_worker)

    user = commands.add_parser("user", help="manage users").add_subparsers(
        title="user commands"
    )
    create = user.add_parser("create", help="create a user and print its API key")
    create.add_argument("email")
    create.set_defaults(handler=_user_create)
    plan = user.add_parser(
        "plan", help="give a user a plan (free, premium, business) or cancel (none)"
    )
    plan.add_argument("email")
    plan.add_argument("plan", help="free, premium, business, or none to cancel")
    plan.add_argument(
        "--days", type=int, default=30, help="how long the plan lasts (default 30)"
    )
    plan.set_defaults(handler=_user_plan)
    add_client_commands(commands)

    database = commands.add_parser("db", help="manage the database").add_subparsers(
        title="database commands"
    )
    upgrade = database.add_parser("upgrade", help="apply pending schema migrations")
    upgrade.set_defaults(handler=_db_upgrade)
    return parser


def _serve(args: argparse.Namespace) -> int:
    from exporthub.api.app import create_server_app
    from exporthub.api.serving import serve

    if not os.environ.get("EXPORTHUB_PUBLIC_URL"):
        os.environ["EXPORTHUB_PUBLIC_URL"] = f"http://{args.host}:{args.port}"
    settings = Settings.from_env()
    app = create_server_app(settings, run_worker=not args.no_worker)
    serve(app, args.host, args.port, settings)
    return EXIT_OK


def _worker(args: argparse.Namespace) -> int:
    from exporthub.api.app import make_broker, node_config
    from exporthub.exports.events import JobEvents
    from exporthub.exports.housekeeping import Outbox
    from exporthub.exports.worker import Worker
    from exporthub.realtime import Node
    from exporthub.store import Database
    from exporthub.webhooks import Dispatcher

    settings = Settings.from_env()

    async def run() -> None:
        db = Database(settings.database_url)
        await db.create()
        broker = make_broker(settings)
        node = Node(
            node_config(settings), settings.ensure_token_secret(), broker=broker
        )
        await node.start()
        # Without a shared broker, nobody would hear this process publish:
        # its messages go through the database to the serving nodes.
        publish = node.publish if broker is not None else Outbox(db).publish
        events = JobEvents(publish, settings.public_url, db)
        dispatcher = Dispatcher(db, settings.webhooks, report=events.webhook_attempt)
        events.sinks.append(dispatcher.sink)
        worker = Worker(db, settings, events)
        task = asyncio.ensure_future(worker.run())
        dispatching = asyncio.ensure_future(dispatcher.run())
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stopping.set)
        await asyncio.wait(
            {task, asyncio.ensure_future(stopping.wait())},
            return_when=asyncio.FIRST_COMPLETED,
        )
        await worker.stop(settings.shutdown_grace)
        task.cancel()
        await dispatcher.stop()
        await dispatching
        await node.shutdown()
        await db.close()

    asyncio.run(run())
    return EXIT_OK


def _user_create(args: argparse.Namespace) -> int:
    from exporthub.accounts import UserExists, create_user
    from exporthub.store import Database

    settings = Settings.from_env()

    async def run() -> int:
        db = Database(settings.database_url)
        await db.create()
        try:
            user, api_key = await create_user(db, args.email)
        except UserExists as exc:
            print(f"exporthub: {exc}", file=sys.stderr)
            return EXIT_FAILED
        except ValueError as exc:
            print(f"exporthub: {exc}", file=sys.stderr)
            return EXIT_USAGE
        finally:
            await db.close()
        print(json.dumps({"uuid": user.uuid, "email": user.email, "api_key": api_key}))
        return EXIT_OK

    return asyncio.run(run())


def _user_plan(args: argparse.Namespace) -> int:
    from exporthub.accounts.plans import UnknownPlan, set_plan, subscription_payload
    from exporthub.exports.events import JobEvents
    from exporthub.exports.housekeeping import Outbox
    from exporthub.store import Database

    settings = Settings.from_env()
    if not 1 <= args.days <= MAX_PLAN_DAYS:
        print(f"exporthub: --days must be from 1 to {MAX_PLAN_DAYS}", file=sys.stderr)
        return EXIT_USAGE

    async def run() -> int:
        db = Database(settings.database_url)
        await db.create()
        try:
            user = await set_plan(db, args.email, args.plan, days=args.days)
        except UnknownPlan as exc:
            print(f"exporthub: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except LookupError as exc:
            print(
                f"exporthub: {exc}; create it with: exporthub user create EMAIL",
                file=sys.stderr,
            )
            return EXIT_FAILED
        # This process serves no client: a running server publishes the
        # messages from the outbox.
        events = JobEvents(Outbox(db).publish, settings.public_url, db)
        await events.subscription_updated(user)
        await db.close()
        print(json.dumps({"email": user.email, **subscription_payload(user)}))
        return EXIT_OK

    return asyncio.run(run())


def _db_upgrade(args: argparse.Namespace) -> int:
    from exporthub.store import Database
    from exporthub.store.migrations import current_version, upgrade

    settings = Settings.from_env()

    async def run() -> None:
        db = Database(settings.database_url)
        try:
            applied = await upgrade(db)
            version = await current_version(db)
        finally:
            await db.close()
        print(json.dumps({"applied": applied, "version": version}))

    asyncio.run(run())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
