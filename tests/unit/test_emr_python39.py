"""Everything shipped to EMR runs on EMR 7's Python 3.9: each Python file of the run's
code (the msdlib zip's modules and the job scripts, as code_shipping builds them)
parses with Python 3.9's grammar, and uses no annotation that 3.9 cannot evaluate."""
import ast
import io
import zipfile

import pytest

from msd_pipeline.targets.emr import code_shipping
from msd_pipeline.targets.emr.layout import JOBS_ZIP
from msd_pipeline.targets.emr.releases import EMR_PYTHON_VERSION


def shipped_python_files():
    """name → source of every Python file a run ships."""
    files = code_shipping.code_files()
    sources = {name: data.decode("utf-8") for name, data in files.items()
               if name.endswith(".py")}
    with zipfile.ZipFile(io.BytesIO(files[JOBS_ZIP])) as archive:
        for name in archive.namelist():
            sources[JOBS_ZIP + "/" + name] = archive.read(name).decode("utf-8")
    return sources


SHIPPED = shipped_python_files()


def test_the_run_ships_the_job_scripts_and_the_msdlib_modules():
    assert {"ingest_songs.py", "train_models.py"} <= set(SHIPPED)
    assert "msdlib.zip/msdlib/io/sources.py" in SHIPPED and len(SHIPPED) > 10


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_file_parses_with_python_3_9_grammar(name):
    ast.parse(SHIPPED[name], filename=name, feature_version=EMR_PYTHON_VERSION)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_file_has_no_union_operator_annotations(name):
    """``X | None`` in an annotation is evaluated at import on 3.9 and raises TypeError
    (PEP 604 is 3.10), unless the module postpones annotations."""
    tree = ast.parse(SHIPPED[name])
    if any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
           and any(alias.name == "annotations" for alias in node.names)
           for node in tree.body):
        return
    offending = [node.lineno for node in ast.walk(tree) for annotation in _annotations(node)
                 if any(isinstance(part, ast.BinOp) and isinstance(part.op, ast.BitOr)
                        for part in ast.walk(annotation))]
    assert not offending, "{}: PEP 604 annotations on lines {}".format(name, offending)


def _annotations(node):
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        arguments = node.args
        for argument in (arguments.posonlyargs + arguments.args + arguments.kwonlyargs
                         + [arguments.vararg, arguments.kwarg]):
            if argument is not None and argument.annotation is not None:
                yield argument.annotation
        if node.returns is not None:
            yield node.returns
    elif isinstance(node, ast.AnnAssign):
        yield node.annotation


def test_the_grammar_check_catches_3_10_syntax():
    with pytest.raises(SyntaxError):
        ast.parse("match x:\n    case 1:\n        pass\n", feature_version=EMR_PYTHON_VERSION)
