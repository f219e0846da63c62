-- wrk script: POST a form body with HTTP Basic auth.
-- BODY and AUTH come from the environment (set by bench/run.sh).
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = os.getenv("AUTH")
