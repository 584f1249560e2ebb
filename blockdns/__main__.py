from blockdns.cli.main import main

main()
