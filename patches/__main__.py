"""``python -m patches {apply,export,check,rebase,git}``: manage the fork's patch series."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from patches import tool


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m patches", description=__doc__)
    parser.add_argument("--repo", type=Path, default=tool.PROJECT_ROOT,
                        help="project root to operate on (default: this checkout)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where downloaded sdists are kept (default: <repo>/.upstream/cache, "
                             "or $CREWAI_FORK_SDIST_CACHE)")
    sub = parser.add_subparsers(dest="command", required=True)

    p_apply = sub.add_parser("apply", help="materialize crewai/ and upstream-tests/ from the pin + series")
    p_apply.add_argument("--force", action="store_true",
                         help="discard local edits and unexported queue commits")

    p_export = sub.add_parser("export", help="turn edits under crewai/ into patch files")
    p_export.add_argument("--new", metavar="SUBJECT", help="make the edits a new patch with this subject")
    p_export.add_argument("--why", metavar="TEXT", help="the new patch's message body: why it exists")
    p_export.add_argument("--into", metavar="PATCH",
                          help="fold the edits into an existing patch (file name, number or subject)")

    sub.add_parser("check", help="the series applies to the pin and no patch file is stale")

    p_rebase = sub.add_parser("rebase", help="replay the series onto another upstream release")
    p_rebase.add_argument("version")
    p_rebase.add_argument("--sha256", help="expected sha256 of that release's sdist")

    p_git = sub.add_parser("git", help="run git in the patch queue (log, show, rebase -i, ...)")
    p_git.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    layout = tool.Layout.for_root(args.repo, args.cache_dir)
    try:
        if args.command == "apply":
            tool.apply(layout, force=args.force)
        elif args.command == "export":
            names = tool.export(layout, new=args.new, why=args.why, into=args.into)
            print(f"patches: exported {len(names)} patch(es) to {layout.patches_dir}")
        elif args.command == "check":
            problems = tool.check(layout)
            for problem in problems:
                print(f"patches check: {problem}", file=sys.stderr)
            if problems:
                return 1
            print(f"patches check: {len(tool.read_series(layout))} patch(es) apply cleanly "
                  f"to {tool.read_pin(layout).package} {tool.read_pin(layout).version}; none stale")
        elif args.command == "rebase":
            report = tool.rebase(layout, args.version, args.sha256)
            if report.conflicts:
                for conflict in report.conflicts:
                    print(f"patches rebase: {conflict}", file=sys.stderr)
                print(f"patches rebase: {len(report.conflicts)} patch(es) conflict with "
                      f"{args.version}; nothing was changed", file=sys.stderr)
                return 1
            for name in report.already_upstream:
                print(f"patches rebase: {name} is already part of {args.version}: dropped from the series",
                      file=sys.stderr)
            print(f"patches rebase: {len(report.applied)} patch(es) replayed onto {args.version} "
                  f"(sha256 {report.sha256}); pin, pyproject.toml and patch files updated. "
                  "Run `python -m patches apply` to materialize it.")
        elif args.command == "git":
            result = tool.git(layout, *args.args, check=False, env=tool.identity())
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
            return result.returncode
    except tool.PatchToolError as exc:
        print(f"patches {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
