"""Train a small PyTorch MLP on scikit-learn's digits and log it to Trainboard.

    trainboard serve                      # in another terminal
    python examples/pytorch_script.py --server http://127.0.0.1:8000 --epochs 5
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

import trainboard


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--name", default="digits MLP (my script)")
    args = parser.parse_args()

    torch.manual_seed(0)
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    loss_fn = nn.CrossEntropyLoss()
    names = [str(i) for i in range(10)]

    with trainboard.init(args.server, name=args.name, config={"lr": args.lr, "epochs": args.epochs},
                         dataset="digits", class_names=names, epochs=args.epochs) as run:
        print(f"logging to {run.url}", flush=True)
        step = 0
        for epoch in range(1, args.epochs + 1):
            model.train()
            permutation = torch.randperm(len(x_train))
            for start in range(0, len(x_train), 32):
                index = permutation[start:start + 32]
                optimizer.zero_grad()
                logits = model(x_train[index])
                loss = loss_fn(logits, y_train[index])
                loss.backward()
                optimizer.step()
                step += 1
                if step % 10 == 0:
                    accuracy = (logits.argmax(1) == y_train[index]).float().mean()
                    run.log({"loss": loss.item(), "accuracy": accuracy.item()}, step=step, epoch=epoch)
            model.eval()
            with torch.no_grad():
                train_logits, test_logits = model(x_train), model(x_test)
            run.log({"loss": loss_fn(train_logits, y_train).item(),
                     "accuracy": (train_logits.argmax(1) == y_train).float().mean().item(),
                     "val_loss": loss_fn(test_logits, y_test).item(),
                     "val_accuracy": (test_logits.argmax(1) == y_test).float().mean().item()}, epoch=epoch)
            if run.cancel_requested:
                break
        result = run.log_confusion_matrix(y_test.numpy(), test_logits.argmax(1).numpy(), names)
        print(f"test accuracy {result['accuracy']:.3f} (run {run.id})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
