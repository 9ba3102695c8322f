-- wrk script of the HTTP publish scenario: every request publishes the same
-- 100-byte JSON document, on keep-alive connections.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"seq":1,"user":"bench","text":"a one-hundred-byte JSON message for the HTTP publish benchmark...."}'
