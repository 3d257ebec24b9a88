import re
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent


def read_version() -> str:
    """The version from ilphttp/_version.py, read as text: importing ilphttp
    would need its dependencies before they are installed."""
    text = (HERE / "ilphttp" / "_version.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise RuntimeError("no __version__ in ilphttp/_version.py")
    return match.group(1)


setup(
    name="ilphttp",
    version=read_version(),
    description="Interledger (ILPv4) packets over HTTP, on Twisted: a superset of ilp-plugin-http",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    python_requires=">=3.9",
    # An explicit root mapping makes `pip install -e .` write a plain .pth
    # pointing at the checkout (setuptools' "static pth" editable strategy),
    # so Twisted's plugin loader finds twisted/plugins/ilphttp_plugin.py on
    # sys.path; the default finder-based editable install hides it from twistd.
    package_dir={"": "."},
    # twisted.plugins is Twisted's package: we ship one module into it and no
    # __init__.py (there is none in the source tree), which would shadow Twisted's.
    packages=["ilphttp", "twisted.plugins"],
    package_data={"ilphttp": ["py.typed"], "twisted.plugins": ["ilphttp_plugin.py"]},
    install_requires=[
        # 25.5: the oldest Twisted that passes the suite (tox -e lowest); before
        # it twisted.web's HTTP/2 ignored Site(parsePOSTFormSubmission=False).
        # Also the newest that PyPy 3.9 can install (bench/pypy-constraints.txt).
        "twisted[tls,http2]>=25.5",
        "treq>=22.1",
        "pyjwt>=2.4",
        "service-identity>=21.1",
        "pyopenssl>=22.0",
        "h2>=4.1",
        # The outgoing HTTP/1.1 client's response parser: httptools (llhttp)
        # where it has wheels (CPython); h11, pure Python, on PyPy, where
        # httptools does not build.
        "httptools>=0.6.3; platform_python_implementation=='CPython'",
        "h11>=0.14; platform_python_implementation!='CPython'",
        # metrics (ilphttp.metrics); 0.16: the floor tested by tox -e lowest
        "prometheus-client>=0.16",
    ],
    extras_require={
        # h11 on CPython too: the tests run both parsers (client and server).
        "test": ["hypothesis>=6.0", "cryptography", "h11>=0.14"],
        "docs": ["sphinx>=5"],
        "lint": ["ruff", "mypy", "mypy-zope"],
        "toml": ["tomli; python_version<'3.11'"],
    },
    entry_points={"console_scripts": ["ilphttp=ilphttp.__main__:main"]},
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: Implementation :: CPython",
        "Programming Language :: Python :: Implementation :: PyPy",
    ],
)
