"""checks.py - the assertions every script test counts: an "ok" or "FAIL"
line per check, and the closing "N passed, M failed" line (exit status 1
on any failure, or when nothing was checked). Import it with the tests/
folder on sys.path: `from checks import check, finish`."""
import sys


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what, detail=None):
        if cond:
            self.passed += 1
            print("ok   %s" % what, flush=True)
        else:
            self.failed += 1
            print("FAIL %s" % what, flush=True)
            if detail is not None:
                text = detail if isinstance(detail, str) else repr(detail)
                print("     " + text[:2000].replace("\n", "\n     "), flush=True)
        return bool(cond)

    def finish(self):
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        sys.exit(1 if self.failed or not self.passed else 0)


checks = Checks()
check = checks.check
finish = checks.finish
