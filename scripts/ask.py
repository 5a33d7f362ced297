"""Ask the lab's model one question through the OpenAI Python SDK."""

import argparse
import pathlib
import ssl
import sys

import openai


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("question")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key-file", required=True, type=pathlib.Path)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--ca", help="CA bundle that signed the proxy's certificate")
    parser.add_argument("--cert", help="client certificate (mutual TLS)")
    parser.add_argument("--key", help="client certificate's private key")
    args = parser.parse_args()

    tls = ssl.create_default_context(cafile=args.ca)
    if args.cert:
        tls.load_cert_chain(args.cert, args.key)
    # The SDK's own HTTP client class, so its defaults (retries, limits) stay.
    http_client = openai.DefaultHttpxClient(verify=tls, timeout=120)
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key_file.read_text().strip(), http_client=http_client)
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
