"""sharpness"""
