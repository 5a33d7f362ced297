"""Ask the lab's model one question through the OpenAI Python SDK."""

import argparse
import pathlib
import sys

import openai


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("question")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key-file", required=True, type=pathlib.Path)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()

    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key_file.read_text().strip())
    messages = [{"role": "user", "content": args.question}]
    if args.stream:
        for chunk in client.chat.completions.create(model=args.model, messages=messages, max_tokens=64, temperature=0, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                print(chunk.choices[0].delta.content, end="", flush=True)
        print()
    else:
        reply = client.chat.completions.create(model=args.model, messages=messages, max_tokens=64, temperature=0)
        print(reply.choices[0].message.content)
    return 0


if __name__ == "__main__":
    sys.exit(main())
