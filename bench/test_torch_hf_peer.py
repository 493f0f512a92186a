"""The PyTorch Hugging Face peer runs every row on tiny shapes and passes its own float64 self-test.

    /usr/bin/python3 -m unittest discover -s bench -p 'test_*.py'
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_hf_peer.py")


def run_peer(*flags):
    p = subprocess.run([sys.executable, PEER, "--threads", "1", *flags], capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout, p.stderr


class TorchHFPeer(unittest.TestCase):
    def test_selftest_passes(self):
        rc, out, err = run_peer("--selftest")
        self.assertEqual(rc, 0, out + err)
        report = json.loads(out.splitlines()[0])
        self.assertTrue(report["ok"], report)

    def test_every_row_prints_one_json_line(self):
        cases = [("full", None, None), ("full_kl", None, None), ("lora", None, None), ("lora_kl", None, None),
                 ("sample", "smollm2-135m", None), ("sample", "llama-3.2-1b", "64")]
        for row, shape, new in cases:
            with self.subTest(row=row, shape=shape):
                flags = ["--row", row, "--smoke", "--steps", "2"]
                flags += ["--shape", shape] if shape else []
                flags += ["--new-tokens", new] if new else []
                rc, out, err = run_peer(*flags)
                self.assertEqual(rc, 0, err)
                lines = out.strip().splitlines()
                self.assertEqual(len(lines), 1, out)
                r = json.loads(lines[0])
                self.assertEqual(r["row"], row)
                self.assertTrue(r["shape"].endswith("-smoke"))
                for key in ("tokens_per_s", "step_s", "gflops", "peak_rss_mb"):
                    self.assertGreater(r[key], 0, key)
                self.assertEqual(len(r["step_times_s"]), 2)
                if row.startswith("lora"):
                    self.assertEqual(r["trainable_params"], r["adapter_params"])
                    self.assertGreater(r["adapter_params"], 0)
                else:
                    self.assertEqual(r["adapter_params"], 0)
                if row.endswith("_kl"):
                    self.assertIn("replay_sample_s", r)
                if row == "sample":
                    # the smoke shape's T is 32, so at most 31 tokens follow BOS
                    self.assertEqual(r["new_tokens"], 31)
                    self.assertAlmostEqual(r["tokens_per_s"] * r["step_s"], r["batch"] * 31, places=6)
                else:
                    self.assertAlmostEqual(r["tokens_per_s"] * r["step_s"], r["batch"] * r["T"], places=6)

    def test_bad_config_names_file_and_key(self):
        bad = os.path.join(os.path.dirname(PEER), "configs", "no-such-shape.json")
        rc, out, err = run_peer("--row", "full", "--smoke", "--shape", bad)
        self.assertEqual(rc, 2)
        self.assertIn("no-such-shape.json", err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        with open(os.path.join(os.path.dirname(PEER), "configs", "smollm2-135m.json")) as f:
            config = json.load(f)
        del config["intermediate_size"]
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "config.json")
            with open(path, "w") as f:
                json.dump(config, f)
            rc, out, err = run_peer("--row", "full", "--smoke", "--shape", path)
        self.assertEqual(rc, 2)
        self.assertIn("config.json: missing key intermediate_size", err)


if __name__ == "__main__":
    unittest.main()
