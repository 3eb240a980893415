"""corr.weights: resolution order, the not-found message, local loading, the CLI."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import pytest
import torch

from corr import weights as W
from corr.weights import places


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An empty weights folder and HF cache, offline."""
    wdir = tmp_path / "weights"
    wdir.mkdir()
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(wdir))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CORR_OFFLINE", raising=False)
    return wdir


def test_weights_dir_default(tmp_path, monkeypatch):
    """Each case on its own: the package is made to live in a scratch checkout."""
    monkeypatch.delenv("CORR_WEIGHTS_DIR", raising=False)
    checkout = tmp_path.resolve() / "checkout"
    (checkout / "corr" / "weights").mkdir(parents=True)
    monkeypatch.setattr(places, "__file__", str(checkout / "corr" / "weights" / "places.py"))
    elsewhere = tmp_path.resolve() / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    # no <checkout>/weights folder: ./weights of the current directory
    assert W.weights_dir() == elsewhere / "weights"
    assert W.weights_dir_origin() == "./weights in the current directory"
    # a weights/ folder beside the package wins over the current directory
    (checkout / "weights").mkdir()
    assert W.weights_dir() == checkout / "weights"
    assert W.weights_dir_origin() == "the repository's weights/ folder"
    (checkout / "weights").rmdir()
    (checkout / "weights").write_text("a file, not a folder")
    assert W.weights_dir() == elsewhere / "weights"
    # $CORR_WEIGHTS_DIR wins over both, with ~ expanded
    monkeypatch.setenv("CORR_WEIGHTS_DIR", "/some/where")
    assert W.weights_dir() == Path("/some/where")
    assert W.weights_dir_origin() == "from $CORR_WEIGHTS_DIR"
    monkeypatch.setenv("CORR_WEIGHTS_DIR", "~/w")
    assert W.weights_dir() == Path.home() / "w"


def test_known_table():
    assert W.KNOWN_WEIGHTS["sd15"].hub_id == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    assert W.KNOWN_WEIGHTS["sd21"].hub_id == "stabilityai/stable-diffusion-2-1"
    b = W.KNOWN_WEIGHTS["dinov2_vitb14"]
    assert b.timm_name == "vit_base_patch14_dinov2.lvd142m"
    assert b.local_names == (
        "vit_base_patch14_dinov2.lvd142m.safetensors",
        "dinov2_vitb14_pretrain.pth",
    )
    g = W.KNOWN_WEIGHTS["dinov2_vitg14_reg"]
    assert g.timm_name == "vit_giant_patch14_reg4_dinov2.lvd142m"
    assert g.official_file == "dinov2_vitg14_reg4_pretrain.pth"
    assert g.hub_id == "timm/vit_giant_patch14_reg4_dinov2.lvd142m"


def test_missing_sd_names_every_place_quickly(env, tmp_path):
    start = time.monotonic()
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("sd15")
    assert time.monotonic() - start < 5
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    for needle in (
        "explicit path",
        str(env / "stable-diffusion-v1-5"),
        str(tmp_path / "hf"),
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "runwayml/stable-diffusion-v1-5",
        "HF_HUB_OFFLINE=1",
        "python -m corr.weights download sd15",
        "never substituted",
    ):
        assert needle in msg, needle


def test_missing_dinov2_names_every_place(env, tmp_path):
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("dinov2_vitb14_reg")
    msg = str(info.value)
    for needle in (
        str(env / "vit_base_patch14_reg4_dinov2.lvd142m.safetensors"),
        str(env / "dinov2_vitb14_reg4_pretrain.pth"),
        "timm/vit_base_patch14_reg4_dinov2.lvd142m",
        str(tmp_path / "hf"),
        "torch hub cache",
        "python -m corr.weights download dinov2_vitb14_reg",
    ):
        assert needle in msg, needle


def test_unreachable_hub_fails_fast_without_offline_flag(env, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("dinov2_vits14")
    assert time.monotonic() - start < 10
    assert "unreachable" in str(info.value)


def test_corr_offline_and_allow_download(env, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("CORR_OFFLINE", "1")
    with pytest.raises(W.WeightsNotFoundError, match="CORR_OFFLINE=1"):
        W.resolve("sd21")
    monkeypatch.delenv("CORR_OFFLINE")
    with pytest.raises(W.WeightsNotFoundError, match="allow_download=False"):
        W.resolve("sd21", allow_download=False)


def test_explicit_path_that_is_missing(env, tmp_path):
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("sd15", path=tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value) and "does not exist" in str(info.value)
    with pytest.raises(W.WeightsNotFoundError):
        W.resolve(str(tmp_path / "also-missing"))


@pytest.fixture(scope="module")
def tiny_sd_folder(tmp_path_factory):
    from corr.extractors.sd import build_sd_models

    models = build_sd_models("sd-tiny", pretrained=False, init_seed=3)
    root = tmp_path_factory.mktemp("sdw") / "stable-diffusion-v1-5"
    models.unet.save_pretrained(root / "unet")
    models.vae.save_pretrained(root / "vae")
    return root, models


def test_local_diffusers_folder_resolves_and_loads(env, tiny_sd_folder):
    from corr.extractors.registry import create_extractor
    from corr.extractors.sd import build_sd_models

    root, models = tiny_sd_folder
    assert (root / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    found = W.resolve("sd", path=root)
    assert found.source == "explicit" and found.format == "diffusers"
    assert W.resolve(str(root)).path == root  # a path as the request

    # the weights-folder convention: weights/stable-diffusion-v1-5/
    (env / "stable-diffusion-v1-5").symlink_to(root, target_is_directory=True)
    found = W.resolve("sd15")
    assert found.source == "weights-folder" and found.path == env / "stable-diffusion-v1-5"
    loaded = build_sd_models("sd15", pretrained=True)
    for k, v in models.unet.state_dict().items():
        assert torch.equal(loaded.unet.state_dict()[k], v), k
    assert torch.equal(loaded.vae.encoder.conv_in.weight, models.vae.encoder.conv_in.weight)
    assert loaded.folder == env / "stable-diffusion-v1-5"
    assert loaded.model_id.startswith("sd15:") and str(root) in loaded.model_id

    ext = create_extractor("sd", pretrained=True, model=str(root), input_size=128)
    assert ext(torch.rand(1, 3, 128, 128))["sd8"].shape == (1, 32, 8, 8)
    assert ext.config()["model"] == W.resolve(str(root)).weights_id


def test_incomplete_folder_is_reported(env):
    bad = env / "stable-diffusion-v1-5"
    (bad / "unet").mkdir(parents=True)
    (bad / "unet" / "config.json").write_text("{}")
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve("sd15")
    assert "no unet/diffusion_pytorch_model*.safetensors" in str(info.value)
    assert "no vae/config.json" in str(info.value)


def test_timm_safetensors_resolves_and_loads(env):
    from safetensors.torch import save_file

    from corr.extractors import dino as D

    src = D.build_tiny_dinov2(518, 0, init_seed=1)
    f = env / "vit_small_patch14_dinov2.lvd142m.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(f))
    found = W.resolve("dinov2_vits14")
    assert found.source == "weights-folder" and found.format == "safetensors" and found.path == f
    model = D.build_tiny_dinov2(168, 0, init_seed=2)
    D.load_dinov2_state_dict(model, W.load_state_dict(found.path))
    assert torch.equal(model.blocks[1].mlp.fc2.weight, src.blocks[1].mlp.fc2.weight)
    assert model.pos_embed.shape == (1, 1 + 144, 48)


def test_official_pth_converts_and_loads_in_the_full_architecture(env):
    """An official-layout dinov2_vits14_pretrain.pth (37x37 + cls positions, mask_token) in the
    weights folder goes through create_extractor('dinov2_vits14', pretrained=True)."""
    from corr.extractors import dino as D
    from corr.extractors.registry import create_extractor

    src, _ = D.build_dinov2_model("dinov2_vits14", pretrained=False, input_size=518, init_seed=7)
    sd = src.state_dict()
    assert sd["pos_embed"].shape == (1, 1 + 37 * 37, 384)
    sd["mask_token"] = torch.zeros(1, 384)
    assert "blocks.0.attn.qkv.weight" in sd
    torch.save(sd, env / "dinov2_vits14_pretrain.pth")
    found = W.resolve("dinov2_vits14")
    assert found.format == "torch" and found.path.name == "dinov2_vits14_pretrain.pth"

    ext = create_extractor("dinov2_vits14", pretrained=True, input_size=224)
    assert torch.equal(ext.model.blocks[11].attn.qkv.weight, sd["blocks.11.attn.qkv.weight"])
    expected = D.resample_pos_embed_dinov2(sd["pos_embed"], 1, (16, 16))
    assert torch.equal(ext.model.pos_embed.data, expected)
    assert ext.config()["model"].startswith("dinov2_vits14:")


def test_loading_never_unpickles_objects(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    f = tmp_path / "bad.pth"
    with open(f, "wb") as fh:
        pickle.dump({"w": Evil()}, fh, protocol=2)
    with pytest.raises(pickle.UnpicklingError):
        W.load_state_dict(f)
    with pytest.raises(ValueError, match="unsupported"):
        W.load_state_dict(tmp_path / "weights.npz")
    torch.save({"model": {"a": torch.ones(2)}}, tmp_path / "ok.pth")
    assert torch.equal(W.load_state_dict(tmp_path / "ok.pth")["a"], torch.ones(2))


def test_cli_list(env, capsys):
    assert W.main(["list"]) == 0
    out = capsys.readouterr().out
    assert str(env) in out and "CORR_WEIGHTS_DIR" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert set(lines) == set(W.KNOWN_WEIGHTS)
    assert "missing" in lines["sd15"] and "stable-diffusion-v1-5/" in lines["sd15"]
    assert "dinov2_vitb14_pretrain.pth" in lines["dinov2_vitb14"]

    torch.save({"x": torch.zeros(1)}, env / "dinov2_vitb14_pretrain.pth")
    W.main(["list"])
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("  dinov2_vitb14 "))
    assert "present" in line and str(env / "dinov2_vitb14_pretrain.pth") in line


def test_cli_download_offline_is_actionable(env, capsys):
    start = time.monotonic()
    assert W.main(["download", "sd15", "dinov2_vitb14"]) == 1
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err
    assert "HF_HUB_OFFLINE=1" in err
    assert "python -m corr.weights download sd15" in err
    assert "stable-diffusion-v1-5" in err and str(env) in err
    assert W.main(["download", "nonsense"]) == 2
    assert not any(env.iterdir())


def test_diffusers_allow_patterns():
    pats = W.diffusers_allow_patterns()
    assert "unet/diffusion_pytorch_model.safetensors" in pats and "model_index.json" in pats
    assert "tokenizer/*" in pats and "scheduler/scheduler_config.json" in pats
    assert not any("text_encoder" in p for p in W.diffusers_allow_patterns(text_encoder=False))
    assert "vae/diffusion_pytorch_model.fp16.safetensors" in W.diffusers_allow_patterns(
        variant="fp16"
    )


def _fake_hf_cache(cache: Path, repo_id: str, files: dict[str, Path | bytes]) -> Path:
    """The huggingface_hub cache layout: models--org--name/{refs/main, snapshots/<commit>/}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snap = repo / "snapshots" / commit
    for rel, content in files.items():
        target = snap / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            target.write_bytes(content.read_bytes())
        else:
            target.write_bytes(content)
    return snap


def test_hf_cache_is_used_offline(env, tmp_path, tiny_sd_folder):
    root, _ = tiny_sd_folder
    files = {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file() and ".cache" not in p.parts
    }
    snap = _fake_hf_cache(tmp_path / "hf", "stable-diffusion-v1-5/stable-diffusion-v1-5", files)
    found = W.resolve("sd15")
    assert found.source == "hf-cache" and found.path == snap
    assert found.weights_id == "stable-diffusion-v1-5/stable-diffusion-v1-5@" + snap.name

    dino_snap = _fake_hf_cache(
        tmp_path / "hf", "timm/vit_small_patch14_dinov2.lvd142m", {"model.safetensors": b"x"}
    )
    found = W.resolve("dinov2_vits14")
    assert found.source == "hf-cache" and found.path == dino_snap / "model.safetensors"

    # the weights folder comes first
    (env / "dinov2_vits14_pretrain.pth").write_bytes(b"x")
    assert W.resolve("dinov2_vits14").source == "weights-folder"


# --------------------------------------------------------------------------------------------
# weights file variants: .bin (pickle read with weights_only) and the fp16 variant
# --------------------------------------------------------------------------------------------


def _save_components(models, folder: Path, **save_kw) -> None:
    import copy

    for name in ("unet", "vae"):
        module = copy.deepcopy(getattr(models, name))
        if save_kw.get("variant") == "fp16":
            module = module.half()
        module.save_pretrained(folder / name, **save_kw)


def _assert_same_weights(loaded, models, transform=lambda t: t):
    for name in ("unet", "vae"):
        want = getattr(models, name).state_dict()
        got = getattr(loaded, name).state_dict()
        if name == "vae":  # build_sd_models keeps the whole VAE; compare everything
            assert set(got) == set(want)
        for k, v in want.items():
            assert torch.equal(got[k], transform(v)), (name, k)


@pytest.mark.parametrize(
    ("save_kw", "files"),
    [
        ({"safe_serialization": False}, "diffusion_pytorch_model.bin"),
        ({"variant": "fp16"}, "diffusion_pytorch_model.fp16.safetensors"),
        ({"variant": "fp16", "safe_serialization": False}, "diffusion_pytorch_model.fp16.bin"),
    ],
)
def test_bin_and_fp16_variant_folders_load(env, tmp_path, tiny_sd_folder, save_kw, files):
    from corr.extractors.sd import build_sd_models

    _, models = tiny_sd_folder
    folder = tmp_path / "model"
    _save_components(models, folder, **save_kw)
    assert sorted(p.name for p in (folder / "unet").iterdir()) == ["config.json", files]
    assert W.resolve("sd", path=folder).source == "explicit"  # the folder is accepted
    loaded = build_sd_models("sd", pretrained=True, path=folder)
    fp16 = save_kw.get("variant") == "fp16"
    # an fp16 file holds the weights rounded to fp16; fp32 was asked for, so they are cast back
    _assert_same_weights(loaded, models, (lambda t: t.half().float()) if fp16 else (lambda t: t))
    assert {p.dtype for p in loaded.unet.parameters()} == {torch.float32}
    if fp16:  # and asked for in fp16, they are the file's values as they are
        half = build_sd_models("sd", pretrained=True, dtype="fp16", path=folder)
        _assert_same_weights(half, models, lambda t: t.half())


def test_full_precision_file_is_preferred_over_the_fp16_variant(env, tmp_path, tiny_sd_folder):
    from corr.extractors.sd import build_sd_models

    _, models = tiny_sd_folder
    other = build_sd_models("sd-tiny", pretrained=False, init_seed=11)  # different values
    folder = tmp_path / "both"
    _save_components(other, folder, variant="fp16")
    _save_components(models, folder, safe_serialization=False)  # plain .bin
    loaded = build_sd_models("sd", pretrained=True, path=folder)
    _assert_same_weights(loaded, models)


# --------------------------------------------------------------------------------------------
# downloads, from a Hugging Face Hub stand-in on 127.0.0.1
# --------------------------------------------------------------------------------------------

HUB_COMMIT = "0123456789abcdef0123456789abcdef76543210"


class LoopbackHub:
    """The part of the Hub's HTTP API that ``huggingface_hub.snapshot_download`` /
    ``hf_hub_download`` use: ``GET /api/models/{repo}/revision/{rev}`` (the commit),
    ``GET /api/models/{repo}/tree/{commit}`` (the file list), ``HEAD``/``GET
    /{repo}/resolve/{commit}/{file}`` (``X-Repo-Commit`` and ``ETag`` headers, the bytes).
    Every request is logged."""

    def __init__(self, repos: dict[str, dict[str, bytes]]) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.repos = repos
        self.log: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._reply(send_body=False)

            def do_GET(self):
                self._reply(send_body=True)

            def _reply(self, send_body):
                from urllib.parse import unquote, urlsplit

                path = unquote(urlsplit(self.path).path)
                hub.log.append((self.command, path))
                body, headers = hub.route(path)
                self.send_response(200 if body is not None else 404)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                if send_body and body:
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @staticmethod
    def blob_id(data: bytes) -> str:
        import hashlib

        return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()

    def route(self, path: str) -> tuple[bytes | None, dict[str, str]]:
        import json

        for repo, files in self.repos.items():
            api = f"/api/models/{repo}"
            if path.startswith(api + "/revision/"):
                info = {"id": repo, "sha": HUB_COMMIT}
                info["siblings"] = [{"rfilename": f} for f in sorted(files)]
                return json.dumps(info).encode(), {"Content-Type": "application/json"}
            if path.startswith(api + "/tree/"):
                tree = [
                    {"type": "file", "path": f, "size": len(d), "oid": self.blob_id(d)}
                    for f, d in sorted(files.items())
                ]
                return json.dumps(tree).encode(), {"Content-Type": "application/json"}
            prefix = f"/{repo}/resolve/"
            if path.startswith(prefix):
                _, _, name = path[len(prefix) :].partition("/")
                if name in files:
                    data = files[name]
                    return data, {"X-Repo-Commit": HUB_COMMIT, "ETag": f'"{self.blob_id(data)}"'}
        return None, {}

    def fetched(self) -> set[str]:
        """The files whose bytes were sent (GET of a resolve URL)."""
        out = set()
        for method, path in self.log:
            for repo in self.repos:
                prefix = f"/{repo}/resolve/"
                if method == "GET" and path.startswith(prefix):  # any revision
                    out.add(f"{repo}:{path[len(prefix) :].partition('/')[2]}")
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_download_from_a_loopback_hub(tmp_path, monkeypatch, tiny_sd_folder):
    """``resolve`` downloads into the HF cache and ``python -m corr.weights download`` into the
    weights folder, each only the files of the documented patterns, from $HF_ENDPOINT (a
    server on 127.0.0.1); the downloaded folder then loads the served weights."""
    import json
    import os
    import subprocess
    import sys

    from corr.extractors.sd import build_sd_models

    root, models = tiny_sd_folder
    sd_repo = "stable-diffusion-v1-5/stable-diffusion-v1-5"
    dino_repo = "timm/vit_small_patch14_dinov2.lvd142m"
    sd_files = {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".cache" not in p.parts
    }
    wanted = {  # the files of diffusers_allow_patterns(text_encoder=False), written out
        "model_index.json": b'{"_class_name": "StableDiffusionPipeline"}',
        "scheduler/scheduler_config.json": b'{"beta_schedule": "scaled_linear"}',
    }
    sd_files.update(wanted)
    not_wanted = {  # other variants and components a real repo has
        "unet/diffusion_pytorch_model.bin": b"pickle",
        "unet/diffusion_pytorch_model.fp16.safetensors": b"half",
        "vae/diffusion_pytorch_model.non_ema.safetensors": b"non-ema",
        "safety_checker/model.safetensors": b"checker",
        "text_encoder/config.json": b"{}",
        "text_encoder/model.safetensors": b"clip",
        "tokenizer/vocab.json": b"{}",
        "v1-5-pruned.ckpt": b"ckpt",
    }
    sd_files.update(not_wanted)
    dino_bytes = b"dinov2 small weights stand-in"
    hub = LoopbackHub({sd_repo: sd_files, dino_repo: {"model.safetensors": dino_bytes}})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "CORR_"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HUB_CACHE=str(tmp_path / "hf"),
        HF_HOME=str(tmp_path / "hf-home"),  # no token or other state from this machine
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        CORR_WEIGHTS_DIR=str(tmp_path / "weights"),
        NO_PROXY="127.0.0.1",
        no_proxy="127.0.0.1",
    )
    script = (
        "import json, sys\n"
        "from corr import weights as W\n"
        "r = W.resolve('sd15', text_encoder=False)\n"  # nothing local: downloads into the cache
        "code = W.main(['download', 'sd15', 'dinov2_vits14', '--no-text-encoder'])\n"
        "print(json.dumps({'source': r.source, 'path': str(r.path), 'id': r.weights_id,"
        " 'code': code, 'after': W.resolve('sd15').source}))\n"
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        hub.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    snap = tmp_path / "hf" / "models--stable-diffusion-v1-5--stable-diffusion-v1-5"
    snap = snap / "snapshots" / HUB_COMMIT
    assert res["source"] == "hub-download" and Path(res["path"]) == snap
    assert res["id"] == f"{sd_repo}@{HUB_COMMIT}"
    assert res["code"] == 0 and res["after"] == "weights-folder"

    expected = {
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    }
    target = tmp_path / "weights" / "stable-diffusion-v1-5"
    for folder in (snap, target):
        got = {
            str(p.relative_to(folder))
            for p in folder.rglob("*")
            if p.is_file() and ".cache" not in p.relative_to(folder).parts
        }
        assert got == expected, folder
        for rel in expected:
            assert (folder / rel).read_bytes() == sd_files[rel], rel
    assert hub.fetched() == {f"{sd_repo}:{f}" for f in expected} | {
        f"{dino_repo}:model.safetensors"
    }  # nothing else was transferred
    dino = tmp_path / "weights" / "vit_small_patch14_dinov2.lvd142m.safetensors"
    assert dino.read_bytes() == dino_bytes
    assert sorted(p.name for p in (tmp_path / "weights").iterdir()) == [
        "stable-diffusion-v1-5",
        "vit_small_patch14_dinov2.lvd142m.safetensors",
    ]  # no temporary files left beside them

    # the downloaded folder is a working model: the served weights, through the weights folder
    monkeypatch.setenv("CORR_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = build_sd_models("sd15", pretrained=True)
    assert loaded.folder == target
    _assert_same_weights(loaded, models)
