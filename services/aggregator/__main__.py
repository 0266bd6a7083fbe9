from services.aggregator.entrypoint import main

main()
