module github.com/paystream/paystream

go 1.26.0
