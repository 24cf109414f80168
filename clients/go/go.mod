module imagegateway.example

go 1.19

require github.com/image-gateway/gateway-go v0.0.0

replace github.com/image-gateway/gateway-go => ./gateway
