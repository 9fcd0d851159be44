def main() -> None:  # replaced by the real CLI
    raise SystemExit("not yet")
