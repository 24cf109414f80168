"""Generate, build and run the example program of each client language (clients/<lang>/)
from the committed openapi/openapi.json, with the generators as a user runs them.

A build is cached under .cache/clients/<lang>/<key>, the key hashing everything it is made
from (the spec, the example program, the generator and toolchain versions), so an
unchanged tree does not pay for generation and compilation twice; any change rebuilds.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "openapi" / "openapi.json"
CLIENTS = ROOT / "clients"
CACHE = ROOT / ".cache" / "clients"
BIN = Path(sys.executable).parent
GENERATOR = BIN / "openapi-generator-cli"
#: Debian's jars for the Java client (APT_PACKAGES in the Makefile). Debian packages no
#: jackson-datatype-jsr310, which the native library's ApiClient imports; it comes from
#: the openapi-generator jar (the PyPI package ships it, with the same jackson family).
JAVA_JARS = [
    f"/usr/share/java/{name}.jar"
    for name in (
        "jackson-databind",
        "jackson-core",
        "jackson-annotations",
        "jsr305",
        "geronimo-annotation-1.3-spec",
        "httpmime",
        "httpclient",
        "httpcore",
        "commons-logging",
    )
]
GO_ENV = {"GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOSUMDB": "off", "GOTOOLCHAIN": "local"}


def generator_jar() -> Path:
    import openapi_generator_cli

    return Path(openapi_generator_cli.__file__).parent / "openapi-generator.jar"


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


@dataclass(frozen=True)
class Language:
    name: str
    #: generator command line, with OUT for the output folder
    generate: tuple[str, ...]
    #: files of clients/<name>/ copied next to the generated client
    sources: tuple[str, ...]

    def build_dir(self) -> Path:
        digest = hashlib.sha256(SPEC.read_bytes())
        for source in self.sources:
            digest.update((CLIENTS / self.name / source).read_bytes())
        digest.update(" ".join(self.generate).encode() + _versions().encode())
        return CACHE / self.name / digest.hexdigest()[:16]


def _openapi_generator(generator: str, *options: str) -> tuple[str, ...]:
    return (
        str(GENERATOR),
        "generate",
        "-g",
        generator,
        "-i",
        str(SPEC),
        "-o",
        "OUT/gateway",
        *options,
    )


LANGUAGES = {
    "python": Language(
        "python",
        (
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(SPEC),
            "--meta",
            "none",
            "--output-path",
            "OUT/image_gateway_client",
        ),
        ("example.py",),
    ),
    "typescript": Language(
        "typescript",
        _openapi_generator("typescript-fetch", "--additional-properties=supportsES6=true"),
        ("example.ts", "tsconfig.json", "package.json", "package-lock.json"),
    ),
    "go": Language(
        "go",
        _openapi_generator(
            "go",
            "--package-name",
            "gateway",
            "--git-user-id",
            "image-gateway",
            "--git-repo-id",
            "gateway-go",
            "--additional-properties=withGoMod=true,isGoSubmodule=false",
        ),
        ("main.go", "go.mod"),
    ),
    "java": Language(
        "java",
        _openapi_generator(
            "java",
            "--library",
            "native",
            "--additional-properties=openApiNullable=false,hideGenerationTimestamp=true,"
            "invokerPackage=imagegateway,apiPackage=imagegateway.api,"
            "modelPackage=imagegateway.model",
        ),
        ("Example.java",),
    ),
}


def _versions() -> str:
    tools = [shutil.which(tool) for tool in ("go", "javac", "node")]
    return f"{sys.version} {generator_jar().stat().st_size} {tools}"


def generate(lang: Language) -> Path:
    """The generated client and the example next to it, in a fresh folder (or the cache)."""
    out = lang.build_dir()
    if (out / ".built").exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    run([part.replace("OUT", str(out)) for part in lang.generate], cwd=out)
    for source in lang.sources:
        shutil.copy(CLIENTS / lang.name / source, out / source)
    return out


def build(lang: Language) -> list[str]:
    """Generate and compile; the command line that runs the example (URL and PNG follow)."""
    out = generate(lang)
    if not (out / ".built").exists():
        BUILDERS[lang.name](out)
        (out / ".built").touch()
    return RUNNERS[lang.name](out)


def _build_typescript(out: Path) -> None:
    modules = CLIENTS / "typescript" / "node_modules"
    if not (modules / ".bin" / "tsc").exists():  # `make client-deps` installs them
        run(["npm", "ci", "--no-audit", "--no-fund"], cwd=CLIENTS / "typescript")
    (out / "node_modules").symlink_to(modules)
    run([str(modules / ".bin" / "tsc"), "-p", "."], cwd=out)


def go_env() -> dict[str, str]:
    cache = ROOT / ".cache"
    return {**GO_ENV, "GOCACHE": str(cache / "go-build"), "GOPATH": str(cache / "gopath")}


def _build_go(out: Path) -> None:
    run(["go", "build", "-o", "example", "."], cwd=out, env=go_env())


def java_classpath(out: Path) -> str:
    return ":".join([str(out / "classes"), *JAVA_JARS, str(generator_jar())])


def _build_java(out: Path) -> None:
    sources = [str(p) for p in (out / "gateway" / "src" / "main").rglob("*.java")]
    classpath = java_classpath(out)
    run(["javac", "-nowarn", "-d", "classes", "-cp", classpath, *sources, "Example.java"], cwd=out)


BUILDERS = {
    "python": lambda out: None,
    "typescript": _build_typescript,
    "go": _build_go,
    "java": _build_java,
}
RUNNERS = {
    "python": lambda out: [sys.executable, str(out / "example.py")],
    "typescript": lambda out: ["node", str(out / "dist" / "example.js")],
    "go": lambda out: [str(out / "example")],
    "java": lambda out: ["java", "-cp", java_classpath(out), "Example"],
}
