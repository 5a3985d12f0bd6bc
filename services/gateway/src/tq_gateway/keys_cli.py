"""``tq-keys``: create, list and revoke API keys in the stack named by ``TQ_PREFIX`` (and ``TQ_ENDPOINT_URL``).

``create`` prints the new token on stdout, alone, once: it is not stored anywhere and cannot be shown again.
Exit codes: 0 done, 1 the store could not be reached or has no such key, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from botocore.exceptions import ClientError
from pydantic import TypeAdapter, ValidationError

from tqcore.adapters import aws
from tqcore.adapters.dynamodb.api_keys import DynamoApiKeyStore
from tqcore.api_keys import ApiKeys
from tqcore.clock import SystemClock
from tqcore.domain.access import ApiKey
from tqcore.domain.codec import ts
from tqcore.domain.commands import Name
from tqcore.errors import StoreUnavailable
from tqcore.settings import CoreSettings, settings_problem

_NAME = TypeAdapter(Name)


def _name(value: str) -> str:
    try:
        return _NAME.validate_python(value)
    except ValidationError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a valid name (letters, digits, _.:-)") from None


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (``--help`` still shows the usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Manage tq API keys (only their hashes are stored).")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="make a key and print its token (shown this once only)")
    create.add_argument("--user", required=True, type=_name, help="the user the key authenticates")
    create.add_argument("--group", action="append", default=[], type=_name, help="a group of the user (repeat)")
    create.add_argument("--admin", action="store_true", help="the key may see and manage every group")
    create.add_argument("--by", default=os.environ.get("USER"), help="who creates the key (default: $USER)")
    commands.add_parser("list", help="every key, without secrets")
    revoke = commands.add_parser("revoke", help="revoke a key (gateways stop accepting it within 10 s)")
    revoke.add_argument("key_id")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "tq-keys") -> int:
    """Run one ``tq-keys`` command (``prog``: the name its messages go under, ``tq keys`` when run by ``tq``)."""
    parser = _parser(prog)
    args = parser.parse_args(argv)
    if args.command == "create" and not (args.group or args.admin):
        parser.error("give at least one --group (or --admin)")
    try:
        settings = CoreSettings()
    except ValidationError as error:
        return _fail(prog, f"bad settings: {settings_problem(error)}", 2)
    keys = ApiKeys(DynamoApiKeyStore(aws.client(settings, "dynamodb"), settings), SystemClock())
    try:
        return _run(args, keys, prog)
    except StoreUnavailable as error:
        return _fail(prog, str(error), 1)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return _fail(prog, f"table {settings.table_name} does not exist (wrong TQ_PREFIX, or run tq-bootstrap)", 1)
        return _fail(prog, str(error), 1)


def _run(args: argparse.Namespace, keys: ApiKeys, prog: str) -> int:
    if args.command == "create":
        key, token = keys.create(args.user, args.group, admin=args.admin, by=args.by)
        print(f"created key {key.key_id} for {_describe(key)}; the token below is shown only now:", file=sys.stderr)
        print(token)
    elif args.command == "list":
        found = keys.all()
        print("key_id\tuser\tgroups\tadmin\tcreated_at\tcreated_by\trevoked_at")
        for key in found:
            row = [key.key_id, key.user, ",".join(sorted(key.groups)) or "-", "yes" if key.admin else "no"]
            row += [ts(key.created_at) or "-", key.created_by or "-", ts(key.revoked_at) or "-"]
            print("\t".join(row))
    else:
        revoked = keys.revoke(args.key_id)
        if revoked is None:
            return _fail(prog, f"no API key {args.key_id!r}", 1)
        print(f"revoked key {revoked.key_id} of {revoked.user} at {ts(revoked.revoked_at)}", file=sys.stderr)
    return 0


def _describe(key: ApiKey) -> str:
    groups = ", ".join(sorted(key.groups)) or "no groups"
    return f"{key.user} ({groups}{'; admin' if key.admin else ''})"


def _fail(prog: str, message: str, code: int) -> int:
    print(f"{prog}: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
