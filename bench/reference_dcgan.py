"""The reference for bench/train_speed.py: the well-known PyTorch DCGAN example's training loop,
re-implemented here from the DCGAN paper (Radford, Metz and Chintala 2016) and the example's
known structure, not copied from it.

What it keeps from the example, because that is what a user who starts from it runs:
torchvision's ImageFolder with Resize, CenterCrop, ToTensor and Normalize to [-1, 1]; a
DataLoader with shuffle and two worker processes (the example's default); the paper's G and D
as nn.Sequential, weights from N(0, 0.02) (BatchNorm scales N(1, 0.02)); D ending in a Sigmoid
with nn.BCELoss; Adam 2e-4, betas (0.5, 0.999); per step D on the real batch, D on
fake.detach(), then G on the same fake; fp32, contiguous tensors; a line printed per step.
What differs: it counts generator steps instead of epochs (`--steps`), and saves the weights
once at the end instead of every epoch, with no sample images every 100 steps (headshot's timed
runs write no samples either). The last line it prints is JSON with its timings.

    .venv/bin/python -m bench.reference_dcgan --dataroot DIR --steps 300 [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.utils.data
import torchvision.datasets as dset
import torchvision.transforms as transforms
from torch import nn

NZ, NGF, NDF, NC = 100, 64, 64, 3


class Generator(nn.Module):
    def __init__(self, nz: int = NZ, ngf: int = NGF, nc: int = NC):
        super().__init__()
        self.main = nn.Sequential(
            # z: nz x 1 x 1 -> (ngf*8) x 4 x 4
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            # -> (ngf*4) x 8 x 8
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            # -> (ngf*2) x 16 x 16
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            # -> ngf x 32 x 32
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            # -> nc x 64 x 64, in [-1, 1]
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


class Discriminator(nn.Module):
    def __init__(self, ndf: int = NDF, nc: int = NC):
        super().__init__()
        self.main = nn.Sequential(
            # nc x 64 x 64 -> ndf x 32 x 32 (no BatchNorm on the input layer)
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            # -> (ndf*2) x 16 x 16
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            # -> (ndf*4) x 8 x 8
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 4), nn.LeakyReLU(0.2, inplace=True),
            # -> (ndf*8) x 4 x 4
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 8), nn.LeakyReLU(0.2, inplace=True),
            # -> 1 x 1 x 1, a probability
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x).view(-1, 1).squeeze(1)


def weights_init(m: nn.Module) -> None:
    name = m.__class__.__name__
    if name.find("Conv") != -1:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif name.find("BatchNorm") != -1:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataroot", required=True, help="an ImageFolder root: one subfolder per class")
    ap.add_argument("--steps", type=int, default=300, help="generator steps (the example counts epochs)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (the example's default: 2)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--outf", default=None, help="where the final weights go (default: not saved)")
    ap.add_argument("--seed", type=int, default=999)
    ap.add_argument("--quiet", action="store_true", help="no line per step")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    device = torch.device(args.device)

    dataset = dset.ImageFolder(root=args.dataroot, transform=transforms.Compose([
        transforms.Resize(args.image_size),
        transforms.CenterCrop(args.image_size),
        transforms.ToTensor(),
        transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    ]))
    dataloader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True,
                                             num_workers=args.workers)

    netG = Generator().to(device)
    netG.apply(weights_init)
    netD = Discriminator().to(device)
    netD.apply(weights_init)
    criterion = nn.BCELoss()
    fixed_noise = torch.randn(64, NZ, 1, 1, device=device)  # noqa: F841 (the example keeps one for its samples)
    real_label, fake_label = 1.0, 0.0
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))

    step = images = epoch = 0
    t_train = time.perf_counter()
    while step < args.steps:
        for i, data in enumerate(dataloader):
            # (1) D: maximise log(D(x)) + log(1 - D(G(z)))
            netD.zero_grad()
            real_cpu = data[0].to(device)
            b_size = real_cpu.size(0)
            label = torch.full((b_size,), real_label, dtype=real_cpu.dtype, device=device)
            output = netD(real_cpu)
            errD_real = criterion(output, label)
            errD_real.backward()
            D_x = output.mean().item()

            noise = torch.randn(b_size, NZ, 1, 1, device=device)
            fake = netG(noise)
            label.fill_(fake_label)
            output = netD(fake.detach())
            errD_fake = criterion(output, label)
            errD_fake.backward()
            D_G_z1 = output.mean().item()
            errD = errD_real + errD_fake
            optimizerD.step()

            # (2) G: maximise log(D(G(z))), on the same fake batch
            netG.zero_grad()
            label.fill_(real_label)
            output = netD(fake)
            errG = criterion(output, label)
            errG.backward()
            D_G_z2 = output.mean().item()
            optimizerG.step()

            step += 1
            images += b_size
            if not args.quiet:
                print(f"[{epoch}][{i}/{len(dataloader)}] step {step} Loss_D: {errD.item():.4f} "
                      f"Loss_G: {errG.item():.4f} D(x): {D_x:.4f} D(G(z)): {D_G_z1:.4f} / {D_G_z2:.4f}", flush=True)
            if step >= args.steps:
                break
        epoch += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t_train
    if args.outf:
        out = Path(args.outf)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(netG.state_dict(), out / "netG.pth")
        torch.save(netD.state_dict(), out / "netD.pth")
    result = {"steps": step, "images": images, "epochs_started": epoch, "train_s": round(train_s, 3),
              "setup_s": round(t_train - started, 3), "images_per_s": round(images / train_s, 2),
              "threads": torch.get_num_threads(), "device": str(device)}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
