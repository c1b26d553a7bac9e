"""The ancestor's design: FastAPI + PyTorch eager in one process, one request at a time per call.

    .venv/bin/python fastapi_torch_server.py --model-dir M --port P
POST /embed {"texts": [...]} -> {"embeddings": [[...]]}; mean pooling + L2 norm in torch.
"""

import argparse
from pathlib import Path
from typing import Any


def build_app(model_dir: Path) -> Any:
    """The FastAPI app with the model loaded at import, the way the ancestor did it."""
    import torch
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))  # nosec B615
    model = AutoModel.from_pretrained(str(model_dir)).eval()  # nosec B615
    app = FastAPI()

    class EmbedRequest(BaseModel):
        texts: list[str]

    @app.post("/embed")
    def embed(request: EmbedRequest) -> dict[str, Any]:
        batch = tokenizer(
            request.texts, padding=True, truncation=True, max_length=256, return_tensors="pt"
        )
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        pooled = torch.nn.functional.normalize(pooled, dim=1)
        return {"embeddings": pooled.tolist()}

    return app


def main() -> None:
    """Serve until killed."""
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(build_app(args.model_dir), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
