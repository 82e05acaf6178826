from ansible.module_utils.cutover_redis import describe_endpoint, redis_client


def test_endpoint_description_hides_password_in_url():
    text = describe_endpoint({"url": "redis://svc:s3cret@10.0.0.5:6380/2"})
    assert "s3cret" not in text
    assert text == "redis://10.0.0.5:6380/2"


def test_client_talks_to_real_server(redis_server):
    client = redis_client(redis_server.options)
    client.set(b"tts:x", b"\xff\x00")
    assert client.get(b"tts:x") == b"\xff\x00"
