"""What a build touched decides when it is rebuilt: code, imports, files, probes, env.

Each test runs the recipe in a fresh process after each edit, as a person would, and
asserts which builds ran (the build log) and the reason given.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def test_a_helper_module_edit_rebuilds_and_a_comment_only_edit_does_not(project):
    project.write("helper.py", """
        def scale(x):
            return 2 * x
    """)
    project.write("recipes.py", """
        import trove, helper
        from buildlog import log

        @trove.recipe
        def table(n):
            log(f"table {n}")
            return helper.scale(n)
    """)
    assert project.call("table", 21) == {"value": 42, "reason": "built: no entry"}
    assert project.call("table", 21)["reason"] == "hit disk"
    assert project.builds() == ["table 21"]

    project.edit("helper.py", "return 2 * x", "# doubled, as the spec says\n    return   2*x  # same code")
    assert project.call("table", 21) == {"value": 42, "reason": "hit disk"}
    assert project.builds() == []

    project.edit("helper.py", "2*x", "3*x")
    served = project.call("table", 21)
    assert served["value"] == 63
    assert served["reason"].startswith("built: helper.py (py-ast) changed (blake3 ")
    assert project.builds() == ["table 21"]


def test_the_recipes_own_module_is_code_too(project):
    project.write("recipes.py", """
        import trove
        from buildlog import log

        @trove.recipe
        def answer():
            log("answer")
            return 42
    """)
    assert project.call("answer")["value"] == 42
    project.edit("recipes.py", "return 42", "return 43")
    served = project.call("answer")
    assert served["value"] == 43
    assert served["reason"].startswith("built: recipes.py (py-ast) changed")
    assert project.builds() == ["answer", "answer"]


def test_a_plugin_imported_by_a_computed_name_is_tracked(project):
    project.write("plugins/__init__.py", "")
    project.write("plugins/fast.py", """
        def run(x):
            return x + 1
    """)
    project.write("recipes.py", """
        import importlib, trove
        from buildlog import log

        @trove.recipe
        def apply(kind, x):
            log(f"apply {kind} {x}")
            plugin = importlib.import_module("plugins." + kind)
            return plugin.run(x)
    """)
    assert project.call("apply", "fast", 1)["value"] == 2
    project.edit("plugins/fast.py", "return x + 1", "return x + 1  # tuned")
    assert project.call("apply", "fast", 1)["reason"] == "hit disk"
    project.edit("plugins/fast.py", "x + 1", "x + 100")
    served = project.call("apply", "fast", 1)
    assert served["value"] == 101
    assert "plugins/fast.py (py-ast) changed" in served["reason"]
    assert project.builds() == ["apply fast 1", "apply fast 1"]


def test_a_module_imported_during_the_build_whose_code_never_runs_is_tracked(project):
    # Only module-level code of `limits` runs, at import: the import event records it.
    project.write("limits.py", "ROWS = 10\n")
    project.write("recipes.py", """
        import importlib, trove
        from buildlog import log

        @trove.recipe
        def rows():
            log("rows")
            return importlib.import_module("limits").ROWS
    """)
    assert project.call("rows")["value"] == 10
    project.edit("limits.py", "ROWS = 10", "ROWS = 20")
    served = project.call("rows")
    assert served["value"] == 20
    assert "limits.py (py-ast) changed" in served["reason"]
    assert project.builds() == ["rows", "rows"]


def test_a_data_file_read_through_open_is_tracked(project):
    project.write("data/prices.csv", "1\n2\n3\n")
    project.write("recipes.py", """
        import trove
        from buildlog import log

        @trove.recipe
        def total():
            log("total")
            with open("data/prices.csv") as f:
                return sum(int(line) for line in f)
    """)
    assert project.call("total")["value"] == 6
    assert project.call("total")["reason"] == "hit disk"
    project.write("data/prices.csv", "1\n2\n3\n4\n")
    served = project.call("total")
    assert served["value"] == 10
    assert served["reason"].startswith("built: data/prices.csv changed (blake3 ")
    assert project.builds() == ["total", "total"]


def test_a_file_the_build_writes_is_an_output_not_an_input(project):
    project.write("recipes.py", """
        import trove
        from buildlog import log

        @trove.recipe
        def report():
            log("report")
            with open("report.txt", "w") as f:
                f.write("done")
            return 1
    """)
    project.call("report")
    (project.root / "report.txt").write_text("changed by someone")
    assert project.call("report")["reason"] == "hit disk"
    assert project.builds() == ["report"]


def test_a_file_read_by_numpy_load_is_tracked(project):
    import numpy as np

    np.save(project.root / "weights.npy", np.arange(4))
    project.write("recipes.py", """
        import numpy as np, trove
        from buildlog import log

        @trove.recipe
        def weights_sum():
            log("weights_sum")
            return int(np.load("weights.npy").sum())
    """)
    assert project.call("weights_sum")["value"] == 6
    assert project.call("weights_sum")["reason"] == "hit disk"
    np.save(project.root / "weights.npy", np.arange(5))
    served = project.call("weights_sum")
    assert served == {"value": 10, "reason": served["reason"]}
    assert served["reason"].startswith("built: weights.npy changed")
    assert project.builds() == ["weights_sum", "weights_sum"]


def test_a_file_read_by_pandas_read_csv_is_tracked(project):
    project.write("prices.csv", "sym,price\nA,1\nB,2\n")
    project.write("recipes.py", """
        import pandas as pd, trove
        from buildlog import log

        @trove.recipe
        def mean_price():
            log("mean_price")
            return float(pd.read_csv("prices.csv")["price"].mean())
    """)
    assert project.call("mean_price")["value"] == 1.5
    assert project.call("mean_price")["reason"] == "hit disk"
    project.write("prices.csv", "sym,price\nA,1\nB,5\n")
    served = project.call("mean_price")
    assert served["value"] == 3.0
    assert served["reason"].startswith("built: prices.csv changed")
    assert project.builds() == ["mean_price", "mean_price"]


def test_a_file_probed_and_absent_then_created_rebuilds(project):
    project.write("recipes.py", """
        import os, trove
        from buildlog import log

        @trove.recipe
        def settings():
            log("settings")
            if os.path.exists("override.cfg"):
                return "override"
            return "default"
    """)
    assert project.call("settings")["value"] == "default"
    assert project.call("settings")["reason"] == "hit disk"
    project.write("override.cfg", "x=1\n")
    served = project.call("settings")
    assert served["value"] == "override"
    assert served["reason"] == served["reason"]
    assert served["reason"].startswith("built: override.cfg changed (absent -> blake3 ")
    assert project.builds() == ["settings", "settings"]


def test_an_environment_variable_read_rebuilds(project):
    project.write("recipes.py", """
        import os, trove
        from buildlog import log

        @trove.recipe
        def greeting():
            log("greeting")
            return os.environ.get("GREETING", "hello") + "/" + str(os.getenv("NAME"))
    """)
    assert project.call("greeting")["value"] == "hello/None"
    assert project.call("greeting")["reason"] == "hit disk"
    served = project.call("greeting", GREETING="hi")
    assert served == {"value": "hi/None", "reason": 'built: env GREETING changed (unset -> "hi")'}
    served = project.call("greeting", GREETING="hi", NAME="ann")
    assert served["reason"] == 'built: env NAME changed (unset -> "ann")'
    assert project.call("greeting", GREETING="hi", NAME="ann")["reason"] == "hit disk"
    assert project.builds() == ["greeting"] * 3


def test_a_directory_listing_is_tracked(project):
    project.write("inbox/a.txt", "a")
    project.write("recipes.py", """
        import glob, trove
        from buildlog import log

        @trove.recipe
        def inbox():
            log("inbox")
            return sorted(glob.glob("inbox/*.txt"))
    """)
    assert project.call("inbox")["value"] == ["inbox/a.txt"]
    assert project.call("inbox")["reason"] == "hit disk"
    project.write("inbox/b.txt", "b")
    served = project.call("inbox")
    assert served["value"] == ["inbox/a.txt", "inbox/b.txt"]
    assert served["reason"].startswith("built: inbox/ listing changed")
    assert project.builds() == ["inbox", "inbox"]


def test_a_file_read_by_a_thread_the_build_started_is_tracked(project):
    project.write("part.txt", "7")
    project.write("recipes.py", """
        import threading, trove
        from concurrent.futures import ThreadPoolExecutor
        from buildlog import log

        def read(path):
            with open(path) as f:
                return int(f.read())

        @trove.recipe
        def parallel():
            log("parallel")
            out = []
            t = threading.Thread(target=lambda: out.append(read("part.txt")))
            t.start(); t.join()
            with ThreadPoolExecutor(2) as pool:
                out.append(pool.submit(read, "part.txt").result())
            return sum(out)
    """)
    assert project.call("parallel")["value"] == 14
    project.write("part.txt", "8")
    served = project.call("parallel")
    assert served["value"] == 16
    assert served["reason"].startswith("built: part.txt changed")
    assert project.builds() == ["parallel", "parallel"]


def test_explicit_track_and_volatile(project):
    project.write("model.bin", "v1")
    project.write("recipes.py", """
        import trove
        from buildlog import log

        @trove.recipe
        def model():
            log("model")
            trove.track("model.bin")          # handed to a library that reads it in C
            trove.volatile("feed", ttl="1h")
            return "ok"
    """)
    project.call("model")
    assert project.call("model")["reason"] == "hit disk"
    project.write("model.bin", "v2")
    assert project.call("model")["reason"].startswith("built: model.bin changed")
    assert project.builds() == ["model", "model"]


def test_track_outside_a_build_says_where_to_call_it():
    import trove

    with pytest.raises(RuntimeError, match="outside a build"):
        trove.track("x")


def test_the_executable_a_build_runs_is_an_input(project):
    tool = project.write("bin/tool", "#!/bin/sh\necho 1\n")
    tool.chmod(0o755)
    project.write("recipes.py", """
        import subprocess, trove
        from buildlog import log

        @trove.recipe
        def version():
            log("version")
            return subprocess.run(["bin/tool"], capture_output=True, text=True).stdout.strip()
    """)
    assert project.call("version")["value"] == "1"
    assert project.call("version")["reason"] == "hit disk"
    project.write("bin/tool", "#!/bin/sh\necho 2\n")
    served = project.call("version")
    assert served["value"] == "2"
    assert served["reason"].startswith("built: bin/tool changed")
    assert project.builds() == ["version", "version"]


def test_a_network_connection_without_max_age_warns_once(project):
    project.write("recipes.py", """
        import socket, trove

        @trove.recipe
        def fetch():
            server = socket.socket()
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            client = socket.create_connection(server.getsockname())
            client.close(); server.close()
            return "fetched"
    """)
    out = project.run("""
        import warnings, recipes
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            recipes.fetch()
        print([str(w.message) for w in caught])
    """)
    assert out.returncode == 0, out.stderr
    assert "connected to" in out.stdout and "max_age" in out.stdout


def test_a_distribution_upgrade_rebuilds(project):
    import shutil
    import sysconfig

    # An installed distribution as pip leaves one: the package and its .dist-info.
    site = Path(sysconfig.get_paths()["purelib"])
    package = site / "tinydist_trove_test"

    def install(version):
        for old in site.glob("tinydist_trove_test-*.dist-info"):
            shutil.rmtree(old)
        package.mkdir(exist_ok=True)
        (package / "__init__.py").write_text("def value():\n    return 1\n")
        info = site / f"tinydist_trove_test-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: tinydist-trove-test\nVersion: {version}\n")
        (info / "top_level.txt").write_text("tinydist_trove_test\n")
        (info / "RECORD").write_text("tinydist_trove_test/__init__.py,,\n")

    install("1.0")
    try:
        project.write("recipes.py", """
            import trove, tinydist_trove_test
            from buildlog import log

            @trove.recipe
            def uses():
                log("uses")
                return tinydist_trove_test.value()
        """)
        assert project.call("uses")["value"] == 1
        assert project.call("uses")["reason"] == "hit disk"
        install("2.0")
        served = project.call("uses")
        assert served["reason"] == "built: tinydist-trove-test (py-dist) changed (1.0 -> 2.0)"
        assert project.builds() == ["uses", "uses"]
    finally:
        shutil.rmtree(package, ignore_errors=True)
        for old in site.glob("tinydist_trove_test-*.dist-info"):
            shutil.rmtree(old)


def _make_db(path, journal="delete"):
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA journal_mode={journal}")
        db.execute("CREATE TABLE t (x INTEGER)")
        db.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
    db.close()


SQLITE_RECIPE = """
    import sqlite3, trove
    from buildlog import log

    @trove.recipe
    def total(name):
        log(f"total {name}")
        db = sqlite3.connect({connect})
        try:
            return db.execute("SELECT sum(x) FROM t").fetchone()[0]
        finally:
            db.close()
"""


def test_a_sqlite_database_edited_by_the_sqlite3_command_line_rebuilds(project):
    import subprocess

    _make_db(project.root / "data.db")
    project.write("recipes.py", SQLITE_RECIPE.replace("{connect}", "name"))
    assert project.call("total", "data.db") == {"value": 6, "reason": "built: no entry"}
    assert project.call("total", "data.db")["reason"] == "hit disk"
    subprocess.run(["sqlite3", str(project.root / "data.db"), "INSERT INTO t VALUES (10)"], check=True)
    served = project.call("total", "data.db")
    assert served["value"] == 16
    assert served["reason"].startswith("built: data.db changed (blake3 ")
    assert project.call("total", "data.db")["reason"] == "hit disk"
    assert project.builds() == ["total data.db", "total data.db"]


@pytest.mark.parametrize("journal", ["delete", "wal"])
def test_a_sqlite_database_edited_by_the_sqlite3_module_rebuilds(project, journal):
    import sqlite3

    _make_db(project.root / "data.db", journal)
    project.write("recipes.py", SQLITE_RECIPE.replace("{connect}", "name"))
    assert project.call("total", "data.db")["value"] == 6
    assert project.call("total", "data.db")["reason"] == "hit disk"
    # A WAL database's changes reach the database file when its last connection closes.
    db = sqlite3.connect(project.root / "data.db")
    with db:
        db.execute("UPDATE t SET x = 5 WHERE x = 1")
    db.close()
    served = project.call("total", "data.db")
    assert served["value"] == 10
    assert served["reason"].startswith("built: data.db changed")
    assert project.builds() == ["total data.db", "total data.db"]


def test_a_sqlite_database_opened_by_uri_is_tracked(project):
    import sqlite3

    _make_db(project.root / "data.db")
    project.write("recipes.py", SQLITE_RECIPE.replace("{connect}", '"file:" + name + "?mode=ro", uri=True'))
    assert project.call("total", "data.db")["value"] == 6
    assert project.call("total", "data.db")["reason"] == "hit disk"
    with sqlite3.connect(project.root / "data.db") as db:
        db.execute("INSERT INTO t VALUES (4)")
    db.close()
    served = project.call("total", "data.db")
    assert served == {"value": 10, "reason": served["reason"]}
    assert served["reason"].startswith("built: data.db changed")
