module github.com/abbot/go-http-auth

go 1.17

require golang.org/x/crypto v0.56.0
