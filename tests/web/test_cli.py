"""`dunning web token create|list|revoke` as an administrator runs it."""

from __future__ import annotations

from dunning.web.tokens import principal_for_secret, revoke_token, token_hash


def test_token_create_shows_the_secret_once_stores_its_hash_and_revokes(cli, sqlite_url):
    env = {"DUNNING_DATABASE_URL": sqlite_url}
    made = cli("web", "token", "create", "--merchant", "m-42", env=env)
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("dwt_") and "token 1 for merchant m-42" in made.stdout
    assert principal_for_secret(sqlite_url, secret).merchant_id == "m-42"

    from sqlalchemy import create_engine, text

    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        stored = [r[0] for r in conn.execute(text("SELECT token_hash FROM web_tokens"))]
    engine.dispose()
    assert stored == [token_hash(secret)]  # never the secret itself

    both = cli("web", "token", "create", "--merchant", "m1", "--operator", "bob", env=env)
    assert both.returncode == 2 and "exactly one" in both.stderr
    revoked = cli("web", "token", "revoke", "1", env=env)
    assert revoked.returncode == 0 and "token 1 revoked" in revoked.stdout
    assert principal_for_secret(sqlite_url, secret) is None
    assert not revoke_token(sqlite_url, 1)  # revoked once is enough


def test_the_demo_ends_with_the_command_and_an_operator_token_for_the_web_area(client_for, site):
    from dunning.cli.demo import web_hint

    text = web_hint(site.url)
    command = next(line.strip() for line in text.splitlines() if "dunning web" in line)
    assert command.endswith("dunning web --port 8080")
    assert command.startswith("DUNNING_DATABASE_URL=") and site.url in command
    secret = text.strip().splitlines()[-1].strip()
    principal = principal_for_secret(site.url, secret)
    assert principal is not None and principal.operator == "demo"
    client = client_for(secret)  # the token logs in: an operator sees every merchant
    assert client.get("/cases?merchant=m2").status_code == 200
