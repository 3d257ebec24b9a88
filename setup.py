from setuptools import setup

setup(
    name="ilphttp",
    version="0.1.0",
    description="Interledger (ILPv4) packets over HTTP, on Twisted: a superset of ilp-plugin-http",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    license_files=["LICENSE"],
    python_requires=">=3.9",
    packages=["ilphttp", "twisted.plugins"],
    package_data={"ilphttp": ["py.typed"], "twisted.plugins": ["ilphttp_plugin.py"]},
    install_requires=[
        "twisted[tls,http2]>=22.10",
        "treq>=22.1",
        "pyjwt>=2.4",
        "service-identity>=21.1",
        "pyopenssl>=22.0",
        "h2>=4.1",
    ],
    extras_require={
        "test": ["hypothesis>=6.0", "cryptography"],
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
